"""``pose-analyzer stream SOURCE... --url ws://HOST:PORT``: the camera client on the command line.

Each SOURCE (a webcam index, an RTSP/HTTP URL or a video file) is one camera of one session.
A live table per stream goes to stderr (its reps: those the service announced, each in a ``rep``
message once committed); ``--json`` writes every message of the service (``frame`` answers,
``rep`` announcements, ...) as one JSON line on stdout.  Ctrl-C sends ``stop`` on every stream
and waits for ``stopped`` (a second Ctrl-C quits at once).  Exit codes: 0 every stream ended
well, 1 a stream failed, 2 bad options.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from pose_analyzer.client import CameraSession, ClientConfig, FrameSource, SourceError, StreamFailedError
from pose_analyzer.client.stats import StreamStats
from pose_analyzer.exercises import available_exercises


def stream_ids(sources: list[str]) -> list[str]:
    """A stream id per source: a file's stem, else ``cam<N>``; made unique with a suffix."""
    ids: list[str] = []
    for number, spec in enumerate(sources, start=1):
        stem = Path(spec).stem if Path(spec).is_file() else f"cam{number}"
        base = re.sub(r"[^A-Za-z0-9_.:-]", "_", stem)[:56] or f"cam{number}"
        name, suffix = base, 2
        while name in ids:
            name, suffix = f"{base}-{suffix}", suffix + 1
        ids.append(name)
    return ids


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def stats_table(stats: dict[str, StreamStats], title: str) -> Table:
    table = Table(title=title)
    for column in ("stream", "state", "fps sent", "fps answered", "latency ms", "reps", "last score"):
        table.add_column(column, justify="left" if column in ("stream", "state") else "right")
    table.add_column("faults")
    table.add_column("reconnects", justify="right")
    for name, s in stats.items():
        table.add_row(
            escape(name),
            s.state,
            _number(s.fps_sent()),
            _number(s.fps_answered()),
            _number(s.latency_ms, 0),
            str(s.rep_count),
            _number(s.last_score, 0),
            escape(", ".join(s.last_faults)) or "-",
            str(s.reconnects),
        )
    return table


def summary_table(stats: dict[str, StreamStats], failures: dict[str, str]) -> Table:
    table = Table(title="summary")
    for column in ("stream", "state", "sent", "answered", "dropped", "reps", "faults", "reconnects", "error"):
        table.add_column(column, justify="right" if column not in ("stream", "state", "error") else "left")
    for name, s in stats.items():
        table.add_row(
            escape(name),
            s.state,
            str(s.sent),
            str(s.answered),
            str(s.dropped + s.skipped),
            str(s.rep_count),
            str(s.faults),
            str(s.reconnects),
            escape(failures.get(name, "")),
        )
    return table


async def _run(session: CameraSession, console: Console, live_table: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        console.print("[yellow]stopping: waiting for every stream's totals (Ctrl-C again to quit)[/yellow]")
        stop.set()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    session_id = await session.open()
    title = f"session {session_id}"
    running = asyncio.ensure_future(session.run(stop))
    if not live_table:
        await running
        return
    with Live(stats_table(session.stats, title), console=console, refresh_per_second=4) as live:
        while not running.done():
            await asyncio.wait({running}, timeout=0.25)
            live.update(stats_table(session.stats, title))
    running.result()


def stream(
    sources: Annotated[
        list[str], typer.Argument(help="webcam index (0), RTSP/HTTP URL or video file; several: one session")
    ],
    url: Annotated[
        str, typer.Option(help="the service (or its balancer): ws://HOST:PORT or wss://HOST:PORT")
    ],
    exercise: Annotated[str | None, typer.Option(help="exercise to count and score")] = None,
    session_id: Annotated[
        str | None, typer.Option("--session-id", help="join this session (default: a new one)")
    ] = None,
    jpeg_quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG quality of the frames sent")] = 80,
    max_width: Annotated[int, typer.Option(min=16, help="frames wider than this are downscaled")] = 640,
    api_key: Annotated[
        str | None, typer.Option(envvar="POSE_API_KEY", help="the service's API key (env POSE_API_KEY)")
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CA certificate to verify a wss:// service"),
    ] = None,
    as_fast_as_possible: Annotated[
        bool,
        typer.Option(
            help="video files: send each frame once the previous one is answered, not at the file's fps"
        ),
    ] = False,
    every: Annotated[int, typer.Option(min=1, help="send every N-th frame of each source")] = 1,
    json_lines: Annotated[
        bool, typer.Option("--json", help="write every message of the service as JSON lines")
    ] = False,
) -> None:
    """Stream cameras or video files to a pose_analyzer service; live table, summary on exit."""
    console = Console(stderr=True)
    if exercise is not None and exercise not in available_exercises():
        console.print(
            f"[red]unknown exercise {escape(exercise)!r}[/red]; one of: {', '.join(available_exercises())}"
        )
        raise typer.Exit(code=2)
    if not url.startswith(("ws://", "wss://")):
        console.print(f"[red]--url must start with ws:// or wss://, got {escape(url)!r}[/red]")
        raise typer.Exit(code=2)
    config = ClientConfig(url, api_key=api_key, ca_file=ca_file, exercise=exercise)
    sources_by_id = {
        name: FrameSource(
            spec,
            jpeg_quality=jpeg_quality,
            max_width=max_width,
            as_fast_as_possible=as_fast_as_possible,
            every=every,
        )
        for name, spec in zip(stream_ids(sources), sources, strict=True)
    }

    def on_message(stream_id: str, message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"stream": stream_id, **message}) + "\n")
        sys.stdout.flush()

    session = CameraSession(config, sources_by_id, session_id, on_message if json_lines else None)
    try:
        asyncio.run(_run(session, console, live_table=console.is_terminal))
    except (StreamFailedError, SourceError) as exc:
        session.failures.setdefault("session", str(exc))
    except KeyboardInterrupt:
        session.failures.setdefault("session", "interrupted")
    console.print(summary_table(session.stats, session.failures))
    if session.failures:
        for name, reason in session.failures.items():
            console.print(f"[red]{escape(name)}[/red]: {escape(reason)}")
        raise typer.Exit(code=1)
