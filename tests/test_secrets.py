"""A `${secret:NAME}` stays a secret through every path it can take: printed, logged, shell-quoted,
returned as an output, raised in an error, retried, run under a timeout, and passed downstream
through `{stage.key}` references. Nothing the run writes under its state folder, no manifest and
nothing it prints holds the secret in any of the forms it takes on the way."""
from __future__ import annotations

import json
import shlex

import pytest

from pipeline_tasks.executor import template_literal
from pipeline_tasks.redaction import MASK, RedactingWriter, redact, secret_forms
from pipeline_tasks.spec.loader import load_pipeline_dict

SECRET = "s3cr'et \"T0K\\én{x}$(id)"
LINES = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END KEY-----"


def forms(secret: str) -> dict[str, str]:
    """Every form the secret takes on its way to a file or a terminal."""
    out = {"plain": secret, "shell-quoted": shlex.quote(secret), "repr": repr(secret)[1:-1],
           "json": json.dumps(secret)[1:-1], "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
           "json of repr": json.dumps(repr(secret))[1:-1], "braces doubled": template_literal(secret),
           "quoted in a template": template_literal(shlex.quote(secret))}
    if "'" in secret:
        out["inside single quotes"] = secret.replace("'", "'\"'\"'")
    return out


PIPELINE = """
pipeline: {name: secrets, version: "1"}
stages:
  - id: use
    type: custom
    config:
      callable: "secret_callables:leak"
      args: {token: "${secret:API_TOKEN}"}
      output_dir: out/use
  - id: cmd
    type: custom
    depends_on: [use]
    config:
      command: "echo token={use.args.token}; echo {use.args.token} >&2; printf '%s\\\\n' {token} {both}"
      params: {token: "{use.args.token}", both: "a{use.args.token}b"}
      output_dir: out/cmd
  - id: timed
    type: custom
    depends_on: [use]
    timeout: 60
    config:
      callable: "secret_callables:leak"
      args: {token: "{use.args.token}"}
      output_dir: out/timed
  - id: down
    type: custom
    depends_on: [cmd]
    retry: {max_retries: 1, retry_delay: 0, retry_on_errors: []}
    config:
      callable: "secret_callables:fail"
      args: {token: "{cmd.params.token}", note: "prefix-{use.args.token}"}
      output_dir: out/down
  - id: failing_cmd
    type: custom
    depends_on: [cmd]
    config:
      command: "echo {cmd.params.both} >&2; exit 3"
      output_dir: out/failing
"""


def leaks(text: bytes, secret: str) -> list[str]:
    return [name for name, form in forms(secret).items() if form.encode() in text]


@pytest.mark.parametrize("secret", [SECRET, LINES], ids=["quotes-and-braces", "multi-line"])
def test_a_secret_never_reaches_a_file_or_the_terminal(ws, monkeypatch, secret):
    ws.write("p.yaml", PIPELINE)
    monkeypatch.setenv("API_TOKEN", secret)
    run = ws.cli("run", "p.yaml", "--no-progress", "--keep-going")
    status = ws.cli("status", "p.yaml")
    status_json = ws.cli("status", "p.yaml", "--json")
    report = ws.cli("report", "p.yaml", check=True)
    assert run.returncode == 1, run.stderr
    terminal = {"run stdout": run.stdout, "run stderr": run.stderr, "status": status.stdout,
                "status --json": status_json.stdout, "report": report.stdout + report.stderr}
    found = {name: leaks(text.encode(), secret) for name, text in terminal.items()}
    (state,) = ws.state_dirs()
    written = [p for p in state.rglob("*") if p.is_file()] + sorted(ws.root.glob("out/*/.stage.json"))
    found.update({str(p.relative_to(ws.root)): leaks(p.read_bytes(), secret) for p in written})
    assert not {where: names for where, names in found.items() if names}

    # each path was taken, with the secret masked on it
    assert {p.name for p in written} >= {"events.jsonl", "checkpoint.json", "use.log", "cmd.log", "timed.log",
                                           "down.log", "down.txt", "failing_cmd.txt", ".stage.json", "report.html"}
    assert f"token is {MASK}" in run.stdout
    assert run.stdout.count(f"token is {MASK}") == 2             # `use`, and `timed` in its own process
    assert f"stderr {MASK}" in run.stderr
    assert f"about to fail with {MASK}" in run.stdout
    logs = {p.stem: p.read_text() for p in (state / "logs").iterdir()}
    assert f"using {MASK}" in logs["use"] and "Traceback" in logs["use"] and f"ValueError: {MASK}" in logs["use"]
    assert f"token={MASK}" in logs["cmd"] and f"note: prefix-{MASK}" in logs["down"]
    assert "attempt 1 failed" in logs["down"]
    manifest = json.loads((ws.root / "out/use/.stage.json").read_text())
    assert manifest["outputs"]["token"] == MASK and manifest["outputs"]["nested"]["items"][1] == f"x{MASK}y"
    assert f"RuntimeError: bad token '{MASK}' in prefix-{MASK}" in (state / "errors/down.txt").read_text()
    assert MASK in (state / "errors/failing_cmd.txt").read_text()
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    failed = {e["stage_id"]: e["error"] for e in events if e["type"] == "pipeline.stage_failed"}
    assert set(failed) == {"down", "failing_cmd"} and all(MASK in error for error in failed.values())


def test_a_stage_carries_the_secrets_of_the_stages_it_references(monkeypatch):
    monkeypatch.setenv("TOKEN", "tok-123")
    monkeypatch.setenv("OTHER", "other-456")
    pipeline = load_pipeline_dict({"pipeline": {"name": "inherit"}, "stages": [
        {"id": "a", "type": "custom", "config": {"command": "true", "params": {"t": "${secret:TOKEN}"}}},
        {"id": "b", "type": "custom", "depends_on": ["a"], "config": {"command": "echo {a.params.t}",
                                                                     "params": {"o": "${secret:OTHER}"}}},
        {"id": "c", "type": "custom", "depends_on": ["b"], "config": {"callable": "os.path:join",
                                                                     "args": {"v": "x-{b.params.o}"}}},
        {"id": "d", "type": "custom", "depends_on": ["a"], "config": {"command": "true"}}]})
    carried = {s.id: s.secret_values for s in pipeline.stages}
    assert carried == {"a": ["tok-123"], "b": ["other-456", "tok-123"], "c": ["other-456", "tok-123"], "d": []}


def test_every_form_of_a_secret_is_masked():
    for name, form in forms(SECRET).items():
        assert redact(f"<{form}>", [SECRET]).replace(f"'{MASK}'", MASK) == f"<{MASK}>", name
    for line in LINES.splitlines():
        assert redact(f"stdout: {line}", [LINES]) == f"stdout: {MASK}"
    assert secret_forms(["", "short"]) == ("short",)


def test_a_stream_masks_a_secret_written_in_pieces():
    class Sink:
        text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass
    sink = Sink()
    stream = RedactingWriter(sink, ["abcdef"])
    for piece in ["xx ab", "c", "de", "f yy abc", "\n", "abcdeX", " ab"]:
        stream.write(piece)
    stream.flush()
    assert sink.text == f"xx {MASK} yy abc\nabcdeX "        # " ab" may start the secret: held back
    stream.finish()
    assert sink.text == f"xx {MASK} yy abc\nabcdeX ab"


def test_the_id_of_a_pipeline_without_a_file_does_not_depend_on_its_secrets(monkeypatch, tmp_path):
    from pipeline_tasks.engine.session import PipelineSession
    data = {"pipeline": {"name": "nofile"}, "stages": [
        {"id": "a", "type": "custom", "config": {"command": "echo ${secret:TOKEN}"}}]}
    ids = set()
    for value in ("first-secret", "second-secret"):
        monkeypatch.setenv("TOKEN", value)
        ids.add(PipelineSession.open(load_pipeline_dict(data), tmp_path).pipeline_id)
    assert len(ids) == 1
