"""``nocode-ml serve``: start the Streamlit app."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MAX_UPLOAD_MB = 1024


def app_path() -> Path:
    """The Streamlit entry script shipped in the package."""
    import streamlit_app

    return Path(streamlit_app.__file__).with_name("app.py")


def streamlit_command(port: int, address: str, headless: bool) -> list[str]:
    """The exact ``streamlit run`` command line (also used by the browser tests)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true" if headless else "false",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="start the No Code ML web app")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="localhost", help="0.0.0.0 to serve the lab network")
    parser.add_argument("--data-dir", type=Path, default=None, help="where projects and jobs live")
    parser.add_argument("--headless", action="store_true", help="do not open a browser")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.data_dir is not None:
        env["NOCODE_ML_DATA_DIR"] = str(args.data_dir.resolve())
    print(
        f"No Code ML is starting at http://{args.address}:{args.port} (Ctrl+C stops it)",
        flush=True,
    )
    command = streamlit_command(args.port, args.address, args.headless)
    # Streamlit takes this process's place, so a stop signal (kill, a service manager, a
    # container stop) reaches the server itself instead of leaving it running orphaned.
    os.execve(command[0], command, env)
    return 0  # not reached
