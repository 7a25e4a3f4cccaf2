"""The stage graph: structural checks, topological order, parallel groups."""
from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from ..errors import DagError

Locate = Callable[..., DagError]


def _default_error(message: str, stage_index: int | None = None, field: str | None = None,
                   item: int | None = None, stage: str | None = None) -> DagError:
    return DagError(message, stage=stage)


def check_graph(ids: Sequence[str], deps: Mapping[str, Sequence[str]], error: Locate = _default_error) -> list[str]:
    """Check ids and dependencies; return a topological order (stable: file order among peers).

    `error(message, stage_index=, field=, item=, stage=)` builds the exception, so callers with a
    YAML source can attach file:line:column.
    """
    seen: dict[str, int] = {}
    for index, stage_id in enumerate(ids):
        if stage_id in seen:
            raise error(f"duplicate stage id '{stage_id}' (first defined as stage #{seen[stage_id] + 1})",
                        stage_index=index, field="id", stage=stage_id)
        seen[stage_id] = index
    for index, stage_id in enumerate(ids):
        for item, dep in enumerate(deps.get(stage_id, ())):
            if dep not in seen:
                raise error(f"depends on unknown stage '{dep}'" + _suggest(dep, ids),
                            stage_index=index, field="depends_on", item=item, stage=stage_id)
            if dep == stage_id:
                raise error("depends on itself", stage_index=index, field="depends_on", item=item, stage=stage_id)
    order = topological_order(ids, deps)
    if len(order) != len(ids):
        cycle = find_cycle(ids, deps)
        first = cycle[0]
        raise error("dependency cycle: " + " -> ".join(cycle), stage_index=seen[first], field="depends_on",
                    stage=first)
    return order


def _suggest(name: str, candidates: Iterable[str]) -> str:
    import difflib
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def topological_order(ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's algorithm; nodes in a cycle are left out."""
    indegree = {i: 0 for i in ids}
    children: dict[str, list[str]] = defaultdict(list)
    for stage_id in ids:
        for dep in set(deps.get(stage_id, ())):
            indegree[stage_id] += 1
            children[dep].append(stage_id)
    ready = [i for i in ids if indegree[i] == 0]
    order: list[str] = []
    while ready:
        nxt: list[str] = []
        for node in ready:
            order.append(node)
            for child in children[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    nxt.append(child)
        ready = nxt
    return order


def generations(ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Topological generations: each group's stages depend only on earlier groups."""
    level: dict[str, int] = {}
    for stage_id in topological_order(ids, deps):
        level[stage_id] = 1 + max((level[d] for d in deps.get(stage_id, ())), default=-1)
    groups: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for stage_id in ids:
        groups[level[stage_id]].append(stage_id)
    return groups


def find_cycle(ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """One dependency cycle as [a, b, c, a], following depends_on edges, or []."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {i: WHITE for i in ids}
    for start in ids:
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(deps.get(start, ())))]
        path = [start]
        colour[start] = GREY
        while stack:
            node, it = stack[-1]
            for dep in it:
                if colour.get(dep) == GREY:
                    cycle = path[path.index(dep):] + [dep]
                    return cycle
                if colour.get(dep) == WHITE:
                    colour[dep] = GREY
                    path.append(dep)
                    stack.append((dep, iter(deps.get(dep, ()))))
                    break
            else:
                colour[node] = BLACK
                path.pop()
                stack.pop()
    return []


def ancestors(stage_id: str, deps: Mapping[str, Sequence[str]]) -> set[str]:
    """Every stage `stage_id` depends on, directly or not."""
    return set(Upstream(stage_id, deps))


class Upstream:
    """The stages `stage_id` depends on, directly or not, nearest first, found only as far as a
    question needs: the whole set of a stage deep in a long chain is as long as the chain, and
    asking for it at every stage made validation quadratic."""

    def __init__(self, stage_id: str, deps: Mapping[str, Sequence[str]]):
        self._deps = deps
        self._found: list[str] = []
        self._seen: set[str] = set()
        self._todo = deque(deps.get(stage_id, ()))

    def _next(self) -> str | None:
        while self._todo:
            dep = self._todo.popleft()
            if dep not in self._seen:
                self._seen.add(dep)
                self._found.append(dep)
                self._todo.extend(self._deps.get(dep, ()))
                return dep
        return None

    def __contains__(self, stage_id: object) -> bool:
        while stage_id not in self._seen:
            if self._next() is None:
                return False
        return True

    def __iter__(self) -> Iterator[str]:
        index = 0
        while index < len(self._found) or self._next() is not None:
            yield self._found[index]
            index += 1


def descendants(stage_ids: Iterable[str], deps: Mapping[str, Sequence[str]]) -> set[str]:
    children: dict[str, list[str]] = defaultdict(list)
    for child, parents in deps.items():
        for parent in parents:
            children[parent].append(child)
    found: set[str] = set()
    todo = list(stage_ids)
    while todo:
        node = todo.pop()
        for child in children[node]:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
