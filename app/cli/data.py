"""``raytrade data ...``: import, pull, validate and inspect market data."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Market data: import files, pull from vendors, validate, inspect the store.",
                       no_args_is_help=True)

STORE = typer.Option(Path("store"), "--store", envvar="RAYTRADE_STORE", help="Parquet store directory.")
MARKET = typer.Option("stock", "--market", help="stock | index | spot | swap")
TIMEFRAME = typer.Option(None, "--timeframe",
                         help="1h, 4h, 1d, ... (default 1d; funding is always stored as events)")
KIND = typer.Option("bars", "--kind", help="bars | mark | funding")
TZ = typer.Option(None, "--tz", help="Time zone of naive timestamps in the file (e.g. UTC, "
                  "America/New_York); they are converted to UTC. Daily bars stamped with their "
                  "date: --tz UTC.")
ADJUST = typer.Option(True, "--adjust/--no-adjust",
                      help="Apply adj_close / split_coefficient columns to prices (see app.data.adjust).")


def _timeframe(kind: str, timeframe: str | None) -> str:
    """The store timeframe for ``kind``: funding rates are events whatever ``--timeframe`` says."""
    if kind == "funding":
        if timeframe not in (None, "events"):
            typer.secho(f"note: funding rates are irregular events, stored under timeframe 'events' "
                        f"(--timeframe {timeframe} ignored)", fg=typer.colors.YELLOW, err=True)
        return "events"
    return timeframe or "1d"


@data_app.command("import")
def import_(path: Path = typer.Argument(..., help="A Parquet/CSV file, or a directory with a manifest.json."),
            store: Path = STORE,
            source: str = typer.Option("file", help="Source name recorded in the store."),
            market: str = MARKET, timeframe: str = TIMEFRAME, kind: str = KIND,
            symbol: str = typer.Option(None, help="Symbol for files without a symbol column."),
            listing_hours: int = typer.Option(0, help="Drop each symbol's first N hours after listing."),
            redenomination: str = typer.Option("off", help="off | cut | adjust"),
            drop_spikes: bool = typer.Option(True, "--drop-spikes/--keep-spikes",
                                             help="Drop one-bar x5 spikes that revert (else refuse the file)."),
            tz: str = TZ, adjust: bool = ADJUST) -> None:
    """Import a file (validated, repaired explicitly, logged) or a manifest directory into the store."""
    from app.cli.render import print_ingest
    from app.data.ingest import ingest_frame
    from app.data.repair import RepairPolicy
    from app.data.sample import import_directory
    from app.data.schema import DatasetKey
    from app.data.sources.file_source import FileSource
    from app.data.store import ParquetStore

    st = ParquetStore(store)
    if path.is_dir():
        import_directory(st, path, on_file=lambda spec, result: print_ingest(result))
        return
    key = DatasetKey(source, market, _timeframe(kind, timeframe), kind)
    frame = FileSource(path, kind=key.kind, symbol=symbol, naive_tz=tz, adjust=adjust).read()
    policy = RepairPolicy(listing_hours_to_drop=listing_hours, redenomination=redenomination,  # type: ignore[arg-type]
                          drop_spikes=drop_spikes)
    print_ingest(ingest_frame(st, key, frame, name=str(path), policy=policy))


@data_app.command("validate")
def validate_(path: Path = typer.Argument(..., help="A Parquet or CSV file."), kind: str = KIND,
              timeframe: str = TIMEFRAME, market: str = MARKET, tz: str = TZ, adjust: bool = ADJUST,
              max_lines: int = typer.Option(20, help="Faults to list (all are counted).")) -> None:
    """Report every fault of a file without storing anything; exit code 1 when errors were found."""
    from app.data.schema import Kind
    from app.data.sources.file_source import FileSource
    from app.data.validate import validate

    frame = FileSource(path, kind=Kind(kind), naive_tz=tz, adjust=adjust).read()
    report = validate(frame, Kind(kind), file=str(path), timeframe=_timeframe(kind, timeframe),
                      market=market)
    typer.echo(report.summary(max_lines))
    raise typer.Exit(0 if report.ok else 1)


@data_app.command("pull")
def pull_(source: str = typer.Option(..., help="yfinance | ccxt:<exchange id>, e.g. ccxt:binanceusdm"),
          symbols: str = typer.Option(..., help="Comma-separated symbols (AAPL,MSFT or BTC/USDT:USDT)."),
          start: str = typer.Option(..., help="UTC start date, inclusive."),
          end: str = typer.Option(None, help="UTC end date, exclusive (default: now)."),
          store: Path = STORE, market: str = MARKET, timeframe: str = TIMEFRAME, kind: str = KIND,
          max_in_flight: int = typer.Option(8, help="Symbols fetched concurrently."),
          local: bool = typer.Option(False, "--local", help="Fetch in this process, one symbol at "
                                     "a time, without starting Ray.")) -> None:
    """Pull many symbols concurrently (Ray tasks) into the store, with a per-symbol report."""
    import functools

    import pandas as pd

    from app.cli.render import pull_progress
    from app.data.ingest import PullRequest, pull, summarize
    from app.data.schema import DatasetKey
    from app.data.sources import make_source, to_utc
    from app.data.store import ParquetStore

    names = tuple(s.strip() for s in symbols.split(",") if s.strip())
    source_name = source.split(":")[-1]  # "yfinance" or the ccxt exchange id
    end_utc = to_utc(end, what="--end") if end else pd.Timestamp.now("UTC").floor("D")
    request = PullRequest(DatasetKey(source_name, market, _timeframe(kind, timeframe), kind), names,
                          to_utc(start, what="--start"), end_utc)
    factory = functools.partial(make_source, source)
    with pull_progress(len(names)) as advance:
        outcomes = pull(ParquetStore(store), factory, request, max_in_flight=max_in_flight,
                        on_done=advance, use_ray=not local)
    typer.echo(summarize(outcomes))
    raise typer.Exit(0 if all(o.ok for o in outcomes) else 1)


@data_app.command("info")
def info(store: Path = STORE, symbols: bool = typer.Option(False, help="One row per symbol.")) -> None:
    """What the store holds: datasets, symbols, date ranges, row counts."""
    from app.cli.render import print_catalog
    from app.data.store import ParquetStore

    print_catalog(ParquetStore(store).catalog_frame(), per_symbol=symbols)
