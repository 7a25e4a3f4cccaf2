"""Plain `doit` in the repo root runs a pipeline: configs/demo.yaml by default, or another with
`doit config=configs/x.yaml`. `doit list --status`, `doit info STAGE`, `doit forget STAGE` and
`doit clean STAGE` work on its stages; `doit -n 2 -P process` runs independent stages in parallel.
"""
from doit import get_var

from pipeline_tasks.engine.dodo_support import dodo_namespace

DOIT_CONFIG, task_stages = dodo_namespace(get_var("config", "configs/demo.yaml"))
