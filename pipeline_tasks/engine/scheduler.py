"""Capacity-aware scheduling on doit's runners.

doit's dispatcher (`control.TaskDispatcher`) still decides what is *ready* (dependencies done) and
doit's `select_task` what must *run* (not up to date); the runners here decide *when* a ready
stage starts: the one of highest `priority` (then the earliest ready) whose need fits in what the
running stages leave of the capacity (`ResourcePool`). A stage granted GPUs gets their ids, which
the runtime puts in `CUDA_VISIBLE_DEVICES`.

`ScheduledRunner` runs stages one at a time in this process; `ScheduledMRunner` in doit's worker
processes (`-n N`), at most N at once and never more than the capacity holds. `ScheduledRun` is
doit's `run` command with these runners. The pool knows nothing of doit, so another executor
(a Dask client, say) can ask it the same questions: `take(need)` → grant or None, `give(grant)`.
"""
from __future__ import annotations

import heapq
import itertools
import math
import os
import queue
import signal
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from doit.cmd_run import Run
from doit.control import TaskControl
from doit.exceptions import TaskFailed
from doit.runner import ERROR, JobTaskPickle, MRunner, MThreadRunner, Runner

from .capacity import NO_NEED, Capacity, Need
from .runtime import Requeued, granted
from .safety import PREEMPT_SIGNAL, install_preempt_handler


@dataclass(frozen=True)
class Grant:
    """What a running stage holds."""
    amounts: dict[str, float]
    gpu_devices: tuple[str, ...] = ()
    gpu_auto: bool = False
    hide_gpus: bool = False          # `device: auto` given no GPU on a machine that has some

    def payload(self) -> dict[str, Any]:
        """What the runtime is told (picklable)."""
        return {"amounts": dict(self.amounts), "gpu_devices": list(self.gpu_devices), "gpu_auto": self.gpu_auto,
                "hide_gpus": self.hide_gpus}


class ResourcePool:
    """Free capacity, taken and given back whole: a need is granted entirely or not at all."""

    def __init__(self, capacity: Capacity):
        self.capacity = capacity
        self.free = dict(capacity.amounts)
        self.free_gpus = list(capacity.gpu_devices)
        self.in_use: dict[str, float] = {name: 0.0 for name in capacity.amounts}
        self.peak: dict[str, float] = dict(self.in_use)        # the most held at once, per resource

    def fits(self, need: Need) -> bool:
        for name, amount in need.amounts.items():
            if name == "gpu":
                if math.ceil(amount) > len(self.free_gpus):
                    return False
            elif name in self.free and amount > self.free[name] + 1e-9:
                return False
        return True

    def share(self, need: Need, ways: int) -> Need:
        """`need` when `ways` stages could start now: a `cpu` that is the stage type's default (the
        cores it can use, not what it must have) becomes an equal share of the free cores, at least
        one: a batch's items run side by side rather than one after another, and a stage starts on
        the cores that are free rather than waiting for all it could use."""
        cpu, free = need.amounts.get("cpu"), self.free.get("cpu")
        if not need.cpu_from_type or not cpu or free is None:
            return need
        share = max(1.0, math.floor(free / max(1, ways)))
        return replace(need, amounts={**need.amounts, "cpu": share}) if share < cpu else need

    def take(self, need: Need) -> Grant | None:
        if not self.fits(need):
            return None
        amounts = {name: amount for name, amount in need.amounts.items() if name in self.free}
        gpus = math.ceil(amounts.get("gpu", 0))
        if need.gpu_auto and "gpu" not in amounts and self.free_gpus:
            amounts["gpu"] = 1.0
            gpus = 1
        devices = tuple(self.free_gpus[:gpus])
        del self.free_gpus[:len(devices)]
        for name, amount in amounts.items():
            self.free[name] -= amount
            self.in_use[name] += amount
            self.peak[name] = max(self.peak[name], self.in_use[name])
        hide = need.gpu_auto and not devices and bool(self.capacity.gpu_devices)
        return Grant(amounts, devices, need.gpu_auto, hide)

    def give(self, grant: Grant) -> None:
        for name, amount in grant.amounts.items():
            self.free[name] += amount
            self.in_use[name] -= amount
        self.free_gpus.extend(grant.gpu_devices)
        self.free_gpus.sort(key=lambda d: self.capacity.gpu_devices.index(d))


@dataclass
class Scheduling:
    """What the runners need to know of a run."""
    capacity: Capacity
    needs: dict[str, Need]                       # by task name; tasks not listed need nothing
    tick: float = 0.5                            # seconds between looks at the clock while waiting
    guard: Any = None                            # engine.safety.Guard, or None
    pool: ResourcePool | None = field(default=None, init=False)


class _Ready:
    """Ready stages, per distinct need, each kept in (priority, arrival) order: choosing the next
    one costs a look at each kind of need, not at every waiting stage."""

    def __init__(self, needs: dict[str, Need]):
        self.needs = needs
        self.by_need: dict[Need | tuple, list] = {}
        self.count = itertools.count()
        self.size = 0

    def add(self, node) -> None:
        need = self.needs.get(node.task.name, NO_NEED)
        key = (tuple(sorted(need.amounts.items())), need.gpu_auto)
        heapq.heappush(self.by_need.setdefault(key, []), (-need.priority, next(self.count), node, need))
        self.size += 1

    def pop_fitting(self, pool: ResourcePool, slots: int = 1):
        """The first ready stage (by priority, then arrival) whose need fits, and its grant; `slots`
        stages may start now, so the type's default `cpu` needs are shared among them."""
        ways = min(slots, self.size)
        best = None
        for key, heap in self.by_need.items():
            entry = heap[0]
            if best is None or entry[:2] < best[1][:2]:
                need = pool.share(entry[3], ways)
                if pool.fits(need):
                    best = (key, entry, need)
        if best is None:
            return None
        key, entry, need = best
        heapq.heappop(self.by_need[key])
        if not self.by_need[key]:
            del self.by_need[key]
        self.size -= 1
        return entry[2], pool.take(need)

    def pop_any(self):
        key = next(iter(self.by_need))
        entry = heapq.heappop(self.by_need[key])
        if not self.by_need[key]:
            del self.by_need[key]
        self.size -= 1
        return entry[2]

    def __len__(self) -> int:
        return self.size


class _Scheduled:
    """What both runners share: pulling ready stages from doit's dispatcher, choosing one."""

    scheduling: Scheduling

    def _begin(self, task_dispatcher) -> None:
        sched = self.scheduling
        sched.pool = self.pool = ResourcePool(sched.capacity)
        self.ready = _Ready(sched.needs)
        self.dispatcher = task_dispatcher
        self.dispatch_done = False
        self.requeued = False
        self.guard_failure_seen = False
        if sched.guard is not None:
            sched.guard.stage_processes = self._stage_roots
            sched.guard.start()

    def _end(self) -> None:
        if self.scheduling.guard is not None:
            self.scheduling.guard.stop()

    def _stage_roots(self) -> list[int]:
        raise NotImplementedError

    def process_task_result(self, node, base_fail):
        """A stage interrupted by a pause (`Requeued`) waits among the ready ones again."""
        self.requeued = isinstance(base_fail, Requeued)
        if self.requeued:
            self.ready.add(node)
            return
        super().process_task_result(node, base_fail)

    def _fail_ready_after_guard(self) -> None:
        """The guard gave up (`pause_timeout`): the stages that were waiting to start fail with its message."""
        guard = self.scheduling.guard
        if guard is None or guard.failed is None or self.guard_failure_seen:
            return
        self.guard_failure_seen = True
        while self.ready:
            node = self.ready.pop_any()
            self._handle_task_error(node, TaskFailed(f"stage '{node.task.name}' not started: {guard.failed}"))
        self._stop_running = True

    def _pull(self, completed) -> None:
        """Hand `completed` back to the dispatcher and take every stage that became ready."""
        send = completed
        while not self.dispatch_done and not self._stop_running:
            try:
                node = self.dispatcher.generator.send(send)
            except StopIteration:
                self.dispatch_done = True
                return
            if node == "hold on":            # every remaining stage waits for one that is running
                return
            if self.select_task(node, self.dispatcher.tasks):
                self.ready.add(node)
                send = None
            else:                            # up to date, ignored or failed: its dependents may go on
                send = node

    def _next(self, slots: int = 1):
        guard = self.scheduling.guard
        if guard is not None and not guard.may_start():
            return None
        picked = self.ready.pop_fitting(self.pool, slots)
        if picked is not None:
            node, grant = picked
            node.task.grant = grant.payload()
        return picked

    def execute_task(self, task):
        """Runs the task with its grant known to the runtime (in a worker under -n)."""
        with granted(getattr(task, "grant", None)):
            return super().execute_task(task)

    def _wait(self) -> None:
        guard = self.scheduling.guard
        if guard is not None:
            guard.wait(self.scheduling.tick)


class ScheduledRunner(_Scheduled, Runner):
    """One stage at a time, in this process, in priority order."""

    def __init__(self, scheduling: Scheduling, *args, **kwargs):
        Runner.__init__(self, *args, **kwargs)
        self.scheduling = scheduling

    def _stage_roots(self) -> list[int]:
        return [os.getpid()]

    def run_tasks(self, task_dispatcher):
        previous = signal.getsignal(PREEMPT_SIGNAL)
        main_thread = threading.current_thread() is threading.main_thread()    # signals: main thread only
        self._begin(task_dispatcher)
        try:
            if self.scheduling.guard is not None:
                self.scheduling.guard.can_interrupt = main_thread    # else a stage only pauses at its progress
                if main_thread:
                    install_preempt_handler(self.scheduling.guard.paths)
            self._run_serially()
        finally:
            self._end()
            if main_thread:
                signal.signal(PREEMPT_SIGNAL, previous)

    def _run_serially(self) -> None:
        completed = None
        while not self._stop_running:
            self._pull(completed)
            completed = None
            self._fail_ready_after_guard()
            picked = self._next()
            if picked is None:
                if self.ready and self.scheduling.guard is not None and self.scheduling.guard.holding():
                    self._wait()             # paused: start nothing until the guard lets go
                    continue
                break
            node, grant = picked
            base_fail = self.execute_task(node.task)
            self.process_task_result(node, base_fail)
            self.pool.give(grant)
            completed = None if self.requeued else node
        if self.ready and not self._stop_running:
            self._unschedulable()

    def _unschedulable(self) -> None:
        self.reporter.runtime_error(f"{len(self.ready)} stage(s) could not be given their resources")
        self.final_result = ERROR


class ScheduledMRunner(_Scheduled, MRunner):
    """Up to `num_process` stages at once in doit's worker processes, within the capacity."""

    def __init__(self, scheduling: Scheduling, *args, **kwargs):
        MRunner.__init__(self, *args, **kwargs)
        self.scheduling = scheduling
        self.workers: list = []

    def _stage_roots(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid]

    def execute_task_subprocess(self, job_q, result_q, reporter_class):
        if self.scheduling.guard is not None:
            install_preempt_handler(self.scheduling.guard.paths)
        return super().execute_task_subprocess(job_q, result_q, reporter_class)

    def run_tasks(self, task_dispatcher):
        self._begin(task_dispatcher)
        try:
            self._run_in_workers(task_dispatcher)
        finally:
            self._end()

    def _run_in_workers(self, task_dispatcher) -> None:
        self._run_tasks_init(task_dispatcher)
        result_q, job_q = self.Queue(), self.Queue()
        running: dict[str, Any] = {}
        completed = None
        try:
            while True:
                self._pull(completed)
                completed = None
                self._fail_ready_after_guard()
                while not self._stop_running and len(running) < self.num_process:
                    picked = self._next(self.num_process - len(running))
                    if picked is None:
                        break
                    node, grant = picked
                    running[node.task.name] = grant
                    if len(self.workers) < len(running):
                        worker = self.Child(target=self.execute_task_subprocess,
                                            args=(job_q, result_q, self.reporter.__class__))
                        worker.start()
                        self.workers.append(worker)
                    job_q.put(JobTaskPickle(node.task))
                if not running:
                    guard = self.scheduling.guard
                    if self.ready and not self._stop_running and guard is not None and guard.holding():
                        self._wait()
                        continue
                    break
                try:
                    result = result_q.get(timeout=self.scheduling.tick)
                except queue.Empty:
                    continue
                if "exit" in result:
                    raise result["exit"](result["exception"])
                node = task_dispatcher.nodes[result["name"]]
                if "reporter" in result:
                    getattr(self.reporter, result["reporter"])(node.task)
                    continue
                self._process_result(node, node.task, result)
                self.pool.give(running.pop(node.task.name))
                completed = None if self.requeued else node
        except (SystemExit, KeyboardInterrupt, Exception):
            for worker in self.workers:
                worker.terminate()
            raise
        for _ in self.workers:
            job_q.put(None)
        for worker in self.workers:
            worker.join()
        while not result_q.empty():          # teardown reports, sent before the workers ended
            result = result_q.get()
            getattr(self.reporter, result["reporter"])(task_dispatcher.tasks[result["name"]])
        if self.ready and not self._stop_running:
            self.reporter.runtime_error(f"{len(self.ready)} stage(s) could not be given their resources")
            self.final_result = ERROR


class ScheduledRun(Run):
    """doit's `run` command, with the runners above when the loader brings a `Scheduling`."""

    name = "run"

    def _execute(self, outfile, verbosity=None, always=False, continue_=False, reporter="console",
                 num_process=0, par_type="process", single=False, auto_delayed_regex=False,
                 force_verbosity=False, failure_verbosity=0, pdb=False):
        scheduling = getattr(self.loader, "scheduling", None)
        if scheduling is None or par_type != "process" or single or isinstance(outfile, str):
            return super()._execute(outfile, verbosity, always, continue_, reporter, num_process, par_type,
                                    single, auto_delayed_regex, force_verbosity, failure_verbosity, pdb)
        from doit.action import PythonAction
        from doit.task import Stream
        PythonAction.pm_pdb = pdb
        self.control = TaskControl(self.task_list, auto_delayed_regex=auto_delayed_regex)
        self.control.process(self.sel_tasks)
        if not self.sel_tasks and hasattr(self.dep_manager.backend, "preload"):
            # the whole pipeline: every task's record is asked for, so read them all with one
            # query rather than one query each (a run of chosen stages reads only theirs)
            self.dep_manager.backend.preload()
        reporter_cls = self.reporters[reporter] if isinstance(reporter, str) else reporter
        self.outstream = outfile
        reporter_obj = (reporter_cls(outfile, {"failure_verbosity": failure_verbosity})
                        if isinstance(reporter_cls, type) else reporter_cls)
        args = [self.dep_manager, reporter_obj, continue_, always, Stream(verbosity, force_verbosity)]
        if num_process == 0:
            runner = ScheduledRunner(scheduling, *args)
        elif MRunner.available():
            runner = ScheduledMRunner(scheduling, *args, num_process)
        else:                                       # pragma: no cover - no multiprocessing
            runner = MThreadRunner(*args, num_process)
        return runner.run_all(self.control.task_dispatcher())
