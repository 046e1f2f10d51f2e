"""The backtrading game in a real X window: ``raytrade play`` on TkAgg under Xvfb, played with key
presses from xdotool (XTEST, as a keyboard would send them), and a screenshot of the X display.

The test builds a small store, then runs this file as a script under ``xvfb-run -a``: the script
starts the game, waits for its window, sends ``b Right s e`` (buy, next bar, sell, end), waits for
the end screen's PNG, grabs the root window of the X display (Pillow's ``ImageGrab`` over XCB: a
real X screenshot, not matplotlib's savefig) and presses ``q``. The test then checks that the keys
reached the game (the leaderboard row has the two trades) and that the screenshot is not blank.
The screenshot goes to ``out/test-artifacts/game/`` (``$RAYTRADE_TEST_ARTIFACTS`` overrides).
``make xvfb`` (a prerequisite of ``make test``) installs Xvfb and xdotool; without them this skips.
No Ray.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ARTIFACTS = Path(os.environ.get("RAYTRADE_TEST_ARTIFACTS", "out/test-artifacts")) / "game"
SCREEN = (1280, 900)
KEYS = ("b", "Right", "s", "e")  # buy, next bar, sell, end: two trades on the leaderboard


def _missing() -> str | None:
    """Why this test cannot run here, or None."""
    for tool in ("Xvfb", "xvfb-run", "xdotool"):
        if shutil.which(tool) is None:
            return f"{tool} not installed: run `make xvfb` (apt-get install xvfb xdotool)"
    try:
        import tkinter  # noqa: F401  (TkAgg needs it)
    except ImportError as exc:
        return f"tkinter not importable ({exc}): TkAgg needs python3-tk / Tk"
    try:
        from PIL import ImageGrab, features  # noqa: F401
    except ImportError as exc:  # pragma: no cover - Pillow comes with matplotlib
        return f"Pillow ImageGrab not importable ({exc})"
    if not features.check("xcb"):
        return "Pillow built without XCB: cannot grab the X display"
    return None


def test_game_window_played_with_real_keys_and_screenshotted_under_xvfb(tmp_path):
    why = _missing()
    if why:
        pytest.skip(why)
    from app.data.schema import DatasetKey
    from app.data.store import ParquetStore
    from app.ui.leaderboard import Leaderboard
    from tests.unit.ui.helpers import frame

    store = ParquetStore(tmp_path / "store")
    store.write(DatasetKey("stooq", "index", "1d"), frame(("^GSPC",), n_bars=260, seed=9))
    store.write(DatasetKey("stooq", "stock", "1d"), frame(("AAA", "BBB"), n_bars=260))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "game-xvfb.png"
    shot.unlink(missing_ok=True)
    board = tmp_path / "board.sqlite"
    started = time.monotonic()
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24",
         sys.executable, __file__, str(store.root), str(board), str(tmp_path / "games"), str(shot)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MPLBACKEND": "TkAgg"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert elapsed < 30, f"took {elapsed:.1f} s"

    rows = Leaderboard(board).top()  # the game saw the real key presses: b and s are two trades
    assert len(rows) == 1 and rows[0]["player"] == "xvfb" and rows[0]["player_trades"] == 2
    assert "buy & hold" in proc.stdout

    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert img.shape[:2] == (SCREEN[1], SCREEN[0])
    gray = img.mean(axis=2)
    assert gray.std() > 10, f"screenshot looks blank (std {gray.std():.2f})"
    colours = np.unique(img.reshape(-1, 3).astype(np.uint8), axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours on screen"
    # the candles' colours (app.ui.game_view UP #26a69a / DOWN #ef5350) are on the screen
    for rgb in ((0x26, 0xA6, 0x9A), (0xEF, 0x53, 0x50)):
        assert (np.abs(img - rgb).sum(axis=2) < 30).sum() > 50, f"no candle pixels of colour {rgb}"


# --- the driver: runs inside xvfb-run (DISPLAY set), not collected by pytest --------------------------
def _xdotool(*args: str, timeout: float = 10) -> str:
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout.strip()


def _drive(store: str, board: str, games: str, shot: str) -> None:
    from PIL import ImageGrab

    raytrade = Path(sys.executable).with_name("raytrade")
    cmd = ([str(raytrade)] if raytrade.exists() else [sys.executable, "-m", "app.cli"]) + [
        "play", "--store", store, "--seed", "1", "--bars", "20", "--view", "30",
        "--leaderboard", board, "--out", games, "--player", "xvfb"]
    game = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        window = _xdotool("search", "--sync", "--onlyvisible", "--name", "^Figure", timeout=20).split()[0]
        time.sleep(0.5)  # let Tk map and paint the canvas before typing
        _xdotool("mousemove", "--window", window, "300", "300")  # no window manager: focus follows pointer
        _xdotool("windowfocus", "--sync", window)
        for key in KEYS:
            _xdotool("key", "--delay", "50", key)
            time.sleep(0.3)
        deadline = time.monotonic() + 15
        while not list(Path(games).glob("*.png")):  # on_end saves the end screen's PNG
            if time.monotonic() > deadline or game.poll() is not None:
                raise SystemExit(f"the game did not end after the keys {KEYS}")
            time.sleep(0.1)
        time.sleep(1.0)  # the end title is drawn on the next idle
        ImageGrab.grab(xdisplay=os.environ["DISPLAY"]).save(shot)
        _xdotool("key", "q")
        out, _ = game.communicate(timeout=10)
        print(out)
    finally:
        if game.poll() is None:
            game.kill()
            print(game.communicate()[0], file=sys.stderr)
    if game.returncode != 0:
        raise SystemExit(f"raytrade play exited with {game.returncode}")


if __name__ == "__main__":
    _drive(*sys.argv[1:5])
