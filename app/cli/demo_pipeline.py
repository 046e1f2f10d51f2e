"""``make demo``: the whole pipeline on the embedded sample, offline, in a few minutes.

1. import the sample (validate, repair explicitly, store) and load it into the envs' arrays;
2. split symbols by sector and time; resample;
3. train PPO with the GRU model on StockSwing-v0's training symbols (tune_configs/demo_stocks_gru.yaml);
4. backtest on the validation symbols and on unseen test symbols (later years), write the HTML
   reports and log everything to MLflow; print agent vs buy-and-hold vs index with CIs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from rich.table import Table

from app.cli.render import console, print_catalog, print_ingest
from app.config.schema import PROJECT_ROOT
from app.data.market import load_market
from app.data.resample import resample_daily
from app.data.sample import import_directory
from app.data.schema import DatasetKey, Kind
from app.data.splits import split_by_symbol, split_by_time
from app.data.store import ParquetStore

STOCKS = DatasetKey("stooq", "stock", "1d")
INDEX = DatasetKey("stooq", "index", "1d")
PERPS = DatasetKey("binanceusdm", "swap", "1h")
SEED = 7


DEMO_EXPERIMENT = PROJECT_ROOT / "tune_configs" / "demo_stocks_gru.yaml"


def run_demo(store_dir: Path, sample_dir: Path, *, train: bool = True, env_steps: int | None = None) -> None:
    store = ParquetStore(store_dir)
    console.rule("[bold]1. import the embedded sample: validate -> repair -> store")
    t0 = time.perf_counter()
    import_directory(store, sample_dir, on_file=lambda spec, result: print_ingest(result))
    console.print(f"imported in {time.perf_counter() - t0:.1f} s into {store.root.resolve()}")
    print_catalog(store.catalog_frame())

    console.rule("[bold]2. load into the envs' arrays")
    t0 = time.perf_counter()
    stocks = load_market(store, STOCKS)
    t_stocks = time.perf_counter() - t0
    perps = load_market(store, PERPS)
    console.print(f"stocks: {stocks.n_symbols} series, {len(stocks.ts_ns):,} bars in {t_stocks * 1e3:.0f} ms; "
                  f"perpetuals: {perps.n_symbols} series, {len(perps.ts_ns):,} hourly bars, "
                  f"{int((perps.funding_rate != 0).sum()):,} funding events on bars")

    console.rule("[bold]3. splits (saved with each run, so results can be reproduced)")
    metadata = pd.read_parquet(sample_dir / "stocks_metadata.parquet")
    by_symbol = split_by_symbol(metadata, seed=SEED, fractions={"train": 0.6, "validation": 0.2, "test": 0.2})
    index_bars = store.read(INDEX, ["^GSPC"])
    by_time = split_by_time(index_bars["timestamp"], train_end=pd.Timestamp("2012-01-01", tz="UTC"),
                            validation_end=pd.Timestamp("2015-01-01", tz="UTC"), embargo_days=30)
    _print_splits(by_symbol, by_time, metadata)

    console.rule("[bold]4. resampling (weekly bars close on the last trading day)")
    aapl = store.read(STOCKS, ["AAPL"]) if "AAPL" in stocks.symbols else store.read(STOCKS, [stocks.symbols[0]])
    weekly, monthly = resample_daily(aapl, "1w"), resample_daily(aapl, "1mo")
    console.print(f"{aapl['symbol'][0]}: {len(aapl):,} daily -> {len(weekly):,} weekly -> {len(monthly):,} monthly bars; "
                  f"last weekly bar: {weekly['timestamp'].iloc[-1].date()} close {weekly['close'].iloc[-1]:.2f}")
    funding = store.read(DatasetKey("binanceusdm", "swap", "events", Kind.FUNDING))
    mean_bps = funding.groupby("symbol")["funding_rate"].mean().mul(1e4).sort_values()
    console.print("mean funding per event (bps): " +
                  ", ".join(f"{s.split('/')[0]} {v:+.2f}" for s, v in mean_bps.items()))
    if train:
        _train_and_evaluate(store_dir, env_steps)
    console.rule("[bold green]demo done")


def _train_and_evaluate(store_dir: Path, env_steps: int | None) -> None:
    from app.cli.render import print_headline
    from app.config.loader import load_experiment
    from app.evaluation.pipeline import backtest_run
    from app.tracking.mlflow_tracker import MlflowTracker
    from app.training.run import train

    overrides = [f"data.store={store_dir}"] + ([f"stopping.env_steps={env_steps}"] if env_steps else [])
    exp = load_experiment(DEMO_EXPERIMENT, overrides)
    console.rule(f"[bold]5. train PPO + {exp.model.name.upper()} on {exp.env.id} ({exp.stopping.env_steps:,} env steps)")
    t0 = time.perf_counter()
    outcome = train(exp, progress=_progress_printer(exp.evaluation.metric))
    state = outcome.state
    console.print(f"trained {state.iteration} iterations, {state.env_steps:,} env steps in "
                  f"{time.perf_counter() - t0:.0f} s; best validation {exp.evaluation.metric} "
                  f"{state.best_metric if state.best_metric is not None else float('nan'):+.3f}")
    console.rule("[bold]6. backtest: validation symbols, then unseen test symbols and years")
    tracker = MlflowTracker(exp.tracking.mlflow_uri, exp.tracking.experiment, outcome.run.name,
                            run_id=state.mlflow_run_id)
    reports = {}
    for part in ("validation", "test"):
        report = backtest_run(outcome.run, part=part, tracker=tracker)
        reports[part] = report
        print_headline(report.headline(), title=f"{part}: agent vs buy-and-hold vs index (95% CI)")
    tracker.end("FINISHED")
    console.print(f"reports: {reports['validation'].out_dir / 'report.html'}\n"
                  f"         {reports['test'].out_dir / 'report.html'}")
    console.print(f"MLflow:  mlflow ui --backend-store-uri {exp.tracking.mlflow_uri}   (run {state.mlflow_run_id})")
    console.print(f"run:     {outcome.run.path}")


def _progress_printer(metric: str):
    from app.cli.train import IterationText, PlainProgress

    return PlainProgress(IterationText(metric), lambda text: console.print("  " + text, highlight=False, soft_wrap=True))


def _print_splits(by_symbol, by_time, metadata: pd.DataFrame) -> None:
    sectors = metadata.set_index("symbol")["sector"]
    table = Table(title=f"split by symbol (seed {by_symbol.seed}, stratified by sector)")
    table.add_column("part")
    table.add_column("symbols", justify="right")
    table.add_column("sectors", justify="right")
    table.add_column("examples")
    for part, symbols in by_symbol.symbols.items():
        table.add_row(part, str(len(symbols)), str(sectors.loc[list(symbols)].nunique()), ", ".join(symbols[:6]))
    console.print(table)
    for part, window in by_time.windows.items():
        console.print(f"  time window {part:<10} {window.start.date()} -> {window.end.date()}")
