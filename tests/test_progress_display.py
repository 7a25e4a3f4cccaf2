"""The progress bars and the run's lines on one terminal: a line printed while bars are drawn in
place stays on the screen intact (it goes above the bars), where a line written past rich's live
display is drawn over at its next refresh. The screen is replayed by a small terminal model
(cursor up, carriage return, erase line) from what rich wrote."""
from __future__ import annotations

import io
import re
import time

from pipeline_tasks.engine.progress import ProgressDisplay
from pipeline_tasks.state import events as ev


class Terminal(io.StringIO):
    """What rich writes, as to a terminal."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        rows, row, col = [""], 0, 0
        for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", self.getvalue()):
            if token == "\n":
                row, col = row + 1, 0
                if row == len(rows):
                    rows.append("")
            elif token == "\r":
                col = 0
            elif token.startswith("\x1b["):
                code, n = token[-1], token[2:-1]
                if code == "A":
                    row = max(0, row - int(n or 1))
                elif code == "K":
                    rows[row] = rows[row][:col] if n in ("", "0") else ""
            else:
                line = rows[row].ljust(col)
                rows[row] = line[:col] + token + line[col + len(token):]
                col += len(token)
        return [r.rstrip() for r in rows]


def draw(tmp_path, write_line) -> list[str]:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    term = Terminal()
    monitor = ProgressDisplay(events, stream=term, tty=True, interval=0.02).start()
    monitor._progress.console.width = 100
    monitor.handle({"type": ev.STAGE_PROGRESS, "stage_id": "frames", "done": 3, "total": 10, "rate": 1.0})
    time.sleep(0.2)                                  # the bar is drawn
    write_line(monitor, term, ".  frames\n")
    monitor.handle({"type": ev.STAGE_PROGRESS, "stage_id": "frames", "done": 7, "total": 10, "rate": 1.0})
    time.sleep(0.2)                                  # and redrawn
    screen = term.screen()
    monitor._progress.live.transient = False         # keep the last frame for the check
    monitor._stop.set()
    return screen


def test_a_line_printed_above_the_bars_stays_intact(tmp_path):
    screen = draw(tmp_path, lambda monitor, term, text: monitor.print_above(text))
    assert ".  frames" in screen
    assert any(line.startswith("frames") and "7/10" in line for line in screen)


def test_a_line_written_past_the_live_display_is_drawn_over(tmp_path):
    screen = draw(tmp_path, lambda monitor, term, text: term.write(text))
    assert ".  frames" not in screen                 # what the reporter did before it printed above


def test_the_run_reporter_prints_above_live_bars_on_a_terminal_only(tmp_path):
    from pipeline_tasks.engine.doit_reporter import RunContext, make_reporter
    from pipeline_tasks.state.paths import StatePaths

    paths = StatePaths(tmp_path / "state")
    paths.ensure()
    ctx = RunContext(pipeline_id="p", pipeline_name="p", paths=paths, stage_order=[], manifests={})
    printed = []

    class Bars:
        live = True

        def print_above(self, text):
            printed.append(text)

    for stdout_is_terminal in (True, False):
        out = Terminal() if stdout_is_terminal else io.StringIO()
        reporter = make_reporter(ctx)(out, {})
        reporter._monitor = Bars()
        reporter.write(".  frames\n")
        assert (printed == [".  frames\n"]) == stdout_is_terminal
        assert (out.getvalue() == "") == stdout_is_terminal
        printed.clear()
