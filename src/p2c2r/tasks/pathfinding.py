"""Task kind ``ai_pathfinding``: A* for game agents on an 8-connected occupancy grid.

The gamer sends one occupancy grid and up to 64 agents, each with a start and a goal cell; the peer returns,
for every agent, a shortest path (start and goal included) and its cost, or an explicit "no path".

Movement rules, fixed because the answers of two peers must be comparable:

* 8-connected: straight steps cost 1, diagonal steps cost sqrt(2);
* no corner cutting: a diagonal step is allowed only when both orthogonally adjacent cells are free;
* a path's reported cost is canonical: ``straight_steps + diagonal_steps * sqrt(2)``, counted over the
  path itself, so that it never carries the rounding of a running sum.

A start or a goal on a blocked cell is refused by :func:`parse_input` (a ``TaskInputError`` naming the
agent), because it is a mistake in the request that costs nothing to detect before paying a peer; "no
path" (``found=False``, empty path, cost 0.0) is kept for goals that are free but unreachable.

The search, the checks in :func:`verify` and the reachability spot check are numba kernels compiled with
``cache=True``, so that only the first process on a machine pays for compilation.
"""

from __future__ import annotations

import math
import random
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np
from msgspec import Meta
from numba import njit

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks.base import Verdict, convert_input, convert_output

NAME = "ai_pathfinding"
VERSION = "1"
TOLERANCE_NOTE = (
    "same found flag for every agent and costs within 1e-6; paths may differ where several are equally short"
)

MAX_SIDE = 1024
MAX_AGENTS = 64
MAX_CELLS = MAX_SIDE * MAX_SIDE
SQRT2 = math.sqrt(2.0)
# A shortest path never visits a cell twice, so no honest cost can exceed this.
MAX_COST = MAX_CELLS * SQRT2
COST_TOLERANCE = 1e-6
# verify's optimality spot check (see _spot_check_window) searches a random stretch of one path: the whole
# path in one run of this many, otherwise this share of it; paths this short are always searched whole.
_WHOLE_PATH_ODDS = 4
_STRETCH_SHARE = 0.5
_SHORT_PATH_STEPS = 16

Coordinate = Annotated[int, Meta(ge=0, le=MAX_SIDE - 1)]
Cell = tuple[Coordinate, Coordinate]
"""A grid cell as ``[x, y]``: x is the column (0..width-1), y the row (0..height-1)."""


class Agent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    start: Cell
    goal: Cell


class Input(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    width: Annotated[int, Meta(ge=1, le=MAX_SIDE)]
    height: Annotated[int, Meta(ge=1, le=MAX_SIDE)]
    grid: bytes
    """Row-major, one byte per cell (cell ``(x, y)`` is byte ``y * width + x``); 0 is free, nonzero blocked."""
    agents: Annotated[list[Agent], Meta(min_length=1, max_length=MAX_AGENTS)]


class AgentPath(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    found: bool
    cost: Annotated[float, Meta(ge=0.0, le=MAX_COST)]
    """Length of ``path``; 0.0 when ``found`` is false."""
    path: Annotated[list[Cell], Meta(max_length=MAX_CELLS)]
    """Cells from start to goal, both included; empty when ``found`` is false."""


class Output(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    paths: Annotated[list[AgentPath], Meta(max_length=MAX_AGENTS)]
    """One entry per agent, in the order of ``Input.agents``."""


# Parsing -------------------------------------------------------------------------------------------------


def parse_input(raw: Any) -> Input:
    inp = convert_input(raw, Input)
    cell_count = inp.width * inp.height
    if len(inp.grid) != cell_count:
        raise TaskInputError(
            "grid",
            f"must hold width*height = {inp.width}*{inp.height} = {cell_count} bytes "
            f"(one per cell, row-major), got {len(inp.grid)}",
        )
    for index, agent in enumerate(inp.agents):
        for role, (x, y) in (("start", agent.start), ("goal", agent.goal)):
            field = f"agents[{index}].{role}"
            if x >= inp.width or y >= inp.height:
                raise TaskInputError(field, f"[{x}, {y}] is outside the {inp.width}x{inp.height} grid")
            if inp.grid[y * inp.width + x]:
                raise TaskInputError(field, f"[{x}, {y}] is a blocked cell")
    return inp


def parse_output(raw: Any) -> Output:
    out = convert_output(raw, Output)
    for index, agent_path in enumerate(out.paths):
        if not agent_path.found and (agent_path.path or agent_path.cost != 0.0):
            raise TaskOutputError(f"paths[{index}]", "found is false, so path must be empty and cost 0.0")
        if agent_path.found and not agent_path.path:
            raise TaskOutputError(
                f"paths[{index}].path", "found is true, so path must hold at least one cell"
            )
    return out


# Compute -------------------------------------------------------------------------------------------------


def compute(inp: Input) -> Output:
    blocked = np.frombuffer(inp.grid, dtype=np.uint8)
    endpoints = _endpoints(inp)
    no_bound = np.full(len(inp.agents), np.inf)
    found, costs, offsets, path_cells = _search_agents(blocked, inp.width, inp.height, endpoints, no_bound)
    # One tolist() for every path at once: building Python ints cell by cell would dominate small tasks.
    cell_pairs = np.stack((path_cells % inp.width, path_cells // inp.width), axis=1).tolist()
    paths = []
    for index in range(len(inp.agents)):
        if found[index]:
            cells = list(map(tuple, cell_pairs[offsets[index] : offsets[index + 1]]))
            paths.append(AgentPath(found=True, cost=float(costs[index]), path=cells))
        else:
            paths.append(AgentPath(found=False, cost=0.0, path=[]))
    return Output(paths=paths)


def _endpoints(inp: Input) -> np.ndarray:
    """``(agents, 4)`` int64 rows of ``start_x, start_y, goal_x, goal_y``."""
    return np.array([(*agent.start, *agent.goal) for agent in inp.agents], dtype=np.int64).reshape(-1, 4)


# Verify --------------------------------------------------------------------------------------------------

_PROBLEMS = (
    "",
    "found is false but a path or a nonzero cost is given",
    "found is true but the path is empty",
    "path does not begin at the agent's start",
    "path does not end at the agent's goal",
    "path leaves the grid",
    "path enters a blocked cell",
    "path visits a cell twice, so it is not a shortest path",
    "path jumps: consecutive cells are not 8-neighbours",
    "path cuts a corner: a diagonal step passes a blocked orthogonal cell",
    "path takes two steps where one legal step joins the same cells, so it is not a shortest path",
    "reported cost differs from the path's length",
    "a detour: this step and the one before have a shorter legal two-step route, so it is not a shortest path",
)


def verify(inp: Input, out: Output, rng: random.Random) -> Verdict:
    """Check every path fully, then spot check optimality of one found path and one no-path claim.

    Full checks (every agent, in one compiled pass): endpoints, bounds, free cells, 8-neighbour steps
    without corner cutting, no cell visited twice, no two steps replaceable by one or by a cheaper two,
    cost equal to the path's length. Spot checks (chosen by ``rng``): a random stretch of one random found
    path must be as short as possible (see ``_spot_check_window``), and one random no-path claim is refuted
    or confirmed by a bidirectional flood fill (with no corner cutting, 8-connected reachability is the same
    as 4-connected reachability, so the flood only needs the four straight moves).
    """
    if len(out.paths) != len(inp.agents):
        return Verdict.reject(
            f"paths: expected {len(inp.agents)} entries (one per agent), got {len(out.paths)}"
        )
    # One pass in Python gathers what the compiled check needs, converted to arrays once at the end: on
    # an 8x8 task each numpy construction costs about as much as the whole compiled check.
    claims: list[int] = []  # six numbers per agent, as _check_paths reads them
    costs: list[float] = []
    coordinates: list[int] = []
    path_begins: list[int] = []
    found_agents: list[int] = []
    lost_agents: list[int] = []
    for index, (agent, agent_path) in enumerate(zip(inp.agents, out.paths)):
        claims += (*agent.start, *agent.goal, agent_path.found, len(agent_path.path))
        costs.append(agent_path.cost)
        path_begins.append(len(coordinates) // 2)
        coordinates += chain.from_iterable(agent_path.path)
        (found_agents if agent_path.found else lost_agents).append(index)
    blocked = np.frombuffer(inp.grid, dtype=np.uint8)
    cells = np.fromiter(coordinates, dtype=np.int64, count=len(coordinates)).reshape(-1, 2)

    agent, problem, step = _check_paths(
        blocked,
        inp.width,
        inp.height,
        np.array(claims, dtype=np.int64).reshape(-1, 6),
        np.array(costs, dtype=np.float64),
        cells,
    )
    if problem:
        where = f"paths[{agent}]" if step < 0 else f"paths[{agent}].path[{step}]"
        return Verdict.reject(f"{where}: {_PROBLEMS[problem]}")

    if found_agents:
        agent = rng.choice(found_agents)
        path_length = len(out.paths[agent].path)
        verdict = _spot_check_window(inp, blocked, cells, path_begins[agent], path_length, agent, rng)
        if not verdict:
            return verdict
    if lost_agents:
        agent = rng.choice(lost_agents)
        start_x, start_y = inp.agents[agent].start
        goal_x, goal_y = inp.agents[agent].goal
        start = start_y * inp.width + start_x
        goal = goal_y * inp.width + goal_x
        if _reachable(blocked, inp.width, inp.height, start, goal):
            return Verdict.reject(f"paths[{agent}]: claims no path, but the goal is reachable")
    return Verdict.accept()


def _spot_check_window(
    inp: Input,
    blocked: np.ndarray,
    cells: np.ndarray,
    path_begin: int,
    path_length: int,
    agent: int,
    rng: random.Random,
) -> Verdict:
    """Whether a random stretch of one (structurally valid) path, ``cells[path_begin:path_begin +
    path_length]``, is as short as the grid allows.

    Every stretch of a shortest path is itself a shortest path. Searching half of a path costs about a
    third of a full search and nearly always catches a path that is too long here and there (the result
    of a greedy or heuristic-weighted search: measured on the benchmark maps, weight 1.2 or more is caught
    on 77 to 100% of draws of the agent). A path whose only fault is a route chosen wrongly as a whole is
    caught only by the whole-path search, which costs a full search for one agent (about 1/agents of
    ``compute``) and so runs once in ``_WHOLE_PATH_ODDS``; together they keep the expected cost of
    ``verify`` under a tenth of ``compute`` on the benchmark. The search only looks for routes strictly
    shorter than the stretch, which lets it drop every cell that cannot lead to one.
    """
    steps = path_length - 1
    whole = steps <= _SHORT_PATH_STEPS or rng.randrange(_WHOLE_PATH_ODDS) == 0
    span = steps if whole else math.ceil(steps * _STRETCH_SHARE)
    first = rng.randrange(steps - span + 1)
    stretch_cost, shorter_found, shorter_cost = _search_stretch(
        blocked, inp.width, inp.height, cells, path_begin + first, span
    )
    if shorter_found:
        return Verdict.reject(
            f"paths[{agent}]: not a shortest path; its cells {first}..{first + span} cost {stretch_cost!r} "
            f"but {shorter_cost!r} suffices"
        )
    return Verdict.accept()


def agree(a: Output, b: Output) -> bool:
    if len(a.paths) != len(b.paths):
        return False
    return all(
        pa.found == pb.found and abs(pa.cost - pb.cost) <= COST_TOLERANCE
        for pa, pb in zip(a.paths, b.paths, strict=True)
    )


# Example -------------------------------------------------------------------------------------------------


def example(rng: random.Random, size: str = "small") -> dict[str, Any]:
    """A random map with scattered obstacles; agents walk from the left edge region to the right one.

    ``small``: 64x64, 20% obstacles, 4 agents. ``large``: 256x256, 25% obstacles, 8 agents (the benchmark).
    """
    if size == "small":
        width = height = 64
        obstacle_share, agent_count = 0.20, 4
    elif size == "large":
        width = height = 256
        obstacle_share, agent_count = 0.25, 8
    else:
        raise ValueError(f"size must be 'small' or 'large', got {size!r}")
    np_rng = np.random.default_rng(rng.getrandbits(64))
    grid = (np_rng.random((height, width)) < obstacle_share).astype(np.uint8)
    band = max(1, width // 8)
    agents = []
    for _ in range(agent_count):
        start = (int(np_rng.integers(0, band)), int(np_rng.integers(0, height)))
        goal = (int(np_rng.integers(width - band, width)), int(np_rng.integers(0, height)))
        # Endpoints must be free (a blocked one is an input error), so clear them.
        grid[start[1], start[0]] = 0
        grid[goal[1], goal[0]] = 0
        agents.append({"start": list(start), "goal": list(goal)})
    return {"width": width, "height": height, "grid": grid.tobytes(), "agents": agents}


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel compute and verify can reach, including the
    no-path flood fill, so that none compiles on a live request."""
    rng = random.Random(0)
    for size in ("small", "large"):
        inp = parse_input(example(rng, size))
        verify(inp, compute(inp), rng)
    walled = parse_input({"width": 3, "height": 3, "grid": bytes([0, 1, 0, 0, 1, 0, 0, 1, 0]),
                          "agents": [{"start": [0, 0], "goal": [2, 2]}]})
    verify(walled, compute(walled), rng)


# Numba kernels -------------------------------------------------------------------------------------------
# The search works on a copy of the grid framed by one blocked cell on every side, so that no neighbour
# test needs a bounds check; a framed cell is ``(y + 1) * (width + 2) + (x + 1)``. The checks in verify
# work on the caller's grid, where a cell is ``y * width + x``.


@njit(cache=True)
def _octile(x: int, y: int, goal_x: int, goal_y: int) -> float:
    dx = abs(x - goal_x)
    dy = abs(y - goal_y)
    return max(dx, dy) + (SQRT2 - 1.0) * min(dx, dy)


@njit(cache=True)
def _before(f_a: float, h_a: float, f_b: float, h_b: float) -> bool:
    # Ties on f go to the entry nearer the goal: A* then runs along one of the many equally short routes
    # instead of widening over all of them. Bitwise operators, not `or`/`and`: the comparison is then free
    # of branches, which the CPU cannot predict inside a heap (about a quarter faster overall).
    return (f_a < f_b) | ((f_a == f_b) & (h_a < h_b))


@njit(cache=True)
def _heap_push(
    heap_f: np.ndarray, heap_h: np.ndarray, heap_cell: np.ndarray, size: int, f: float, h: float, cell: int
) -> None:
    """Add an entry to a binary min-heap of ``size`` entries kept in three parallel arrays."""
    position = size
    while position > 0:
        parent = (position - 1) >> 1
        if not _before(f, h, heap_f[parent], heap_h[parent]):
            break
        heap_f[position] = heap_f[parent]
        heap_h[position] = heap_h[parent]
        heap_cell[position] = heap_cell[parent]
        position = parent
    heap_f[position] = f
    heap_h[position] = h
    heap_cell[position] = cell


@njit(cache=True)
def _heap_pop(heap_f: np.ndarray, heap_h: np.ndarray, heap_cell: np.ndarray, size: int) -> int:
    """Remove the first entry of a heap of ``size`` entries and return its cell."""
    top = heap_cell[0]
    size -= 1
    f = heap_f[size]
    h = heap_h[size]
    cell = heap_cell[size]
    position = 0
    while True:
        child = 2 * position + 1
        if child >= size:
            break
        if child + 1 < size and _before(heap_f[child + 1], heap_h[child + 1], heap_f[child], heap_h[child]):
            child += 1
        if not _before(heap_f[child], heap_h[child], f, h):
            break
        heap_f[position] = heap_f[child]
        heap_h[position] = heap_h[child]
        heap_cell[position] = heap_cell[child]
        position = child
    heap_f[position] = f
    heap_h[position] = h
    heap_cell[position] = cell
    return top


@njit(cache=True)
def _search_agents(
    blocked: np.ndarray, width: int, height: int, endpoints: np.ndarray, cost_bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A* for every agent on one grid, looking only for paths strictly cheaper than ``cost_bounds``.

    ``compute`` passes infinite bounds; ``verify`` passes the cost of a claimed path, so that cells whose
    estimate ``f = g + h`` already reaches it are never queued (with an admissible ``h`` they cannot lie
    on a cheaper path) and "not found" means "the claim is optimal".

    Returns ``found`` (bool per agent), ``costs`` (canonical length per agent, 0.0 without a path),
    ``offsets`` (agent ``i``'s path is ``path_cells[offsets[i]:offsets[i + 1]]``) and ``path_cells``
    (caller's cell indices ``y * width + x``).
    """
    framed_width = width + 2
    framed_count = framed_width * (height + 2)
    free = np.zeros(framed_count, dtype=np.bool_)
    for y in range(height):
        framed_row = (y + 1) * framed_width + 1
        for x in range(width):
            free[framed_row + x] = blocked[y * width + x] == 0

    # Per-cell state shared by all agents and never cleared: ``mark`` says what the cell is for the
    # current agent (``2 * agent + 2`` queued, ``2 * agent + 3`` closed, anything else unseen), which saves
    # a full reset per agent on large grids. ``g_cost`` and ``came_from`` count only for queued or closed.
    mark = np.zeros(framed_count, dtype=np.int32)
    g_cost = np.empty(framed_count, dtype=np.float64)
    came_from = np.empty(framed_count, dtype=np.int32)
    # Lazy deletion: a cell whose cost improves is pushed again and stale entries are skipped when popped.
    capacity = 1024
    heap_f = np.empty(capacity, dtype=np.float64)
    heap_h = np.empty(capacity, dtype=np.float64)
    heap_cell = np.empty(capacity, dtype=np.int32)
    # A neighbour whose f equals the f just popped is a minimum of the open set, so it may be expanded
    # next without the heap (a third of all pushes on the benchmark maps, about 15% of the time).
    same_f_stack = np.empty(framed_count, dtype=np.int32)

    # Straight moves first (east, west, south, north), then diagonals; the order is part of the tie-breaking.
    step_x = np.array([1, -1, 0, 0, 1, -1, 1, -1])
    step_y = np.array([0, 0, 1, -1, 1, 1, -1, -1])
    step_offset = step_y * framed_width + step_x
    step_cost = np.array([1.0, 1.0, 1.0, 1.0, SQRT2, SQRT2, SQRT2, SQRT2])

    agent_count = endpoints.shape[0]
    found = np.zeros(agent_count, dtype=np.bool_)
    costs = np.zeros(agent_count, dtype=np.float64)
    offsets = np.zeros(agent_count + 1, dtype=np.int64)
    path_cells = np.empty(1024, dtype=np.int64)
    path_used = 0

    for agent in range(agent_count):
        queued = 2 * agent + 2
        closed = queued + 1
        start_x = endpoints[agent, 0]
        start_y = endpoints[agent, 1]
        goal_x = endpoints[agent, 2]
        goal_y = endpoints[agent, 3]
        start = (start_y + 1) * framed_width + start_x + 1
        goal = (goal_y + 1) * framed_width + goal_x + 1
        cost_bound = cost_bounds[agent]
        start_h = _octile(start_x, start_y, goal_x, goal_y)
        offsets[agent + 1] = path_used
        if start_h >= cost_bound:
            continue
        mark[start] = queued
        g_cost[start] = 0.0
        came_from[start] = -1
        _heap_push(heap_f, heap_h, heap_cell, 0, start_h, start_h, start)
        heap_size = 1
        stack_size = 0
        current_f = start_h
        reached = False
        while heap_size > 0 or stack_size > 0:
            if stack_size > 0:
                stack_size -= 1
                cell = same_f_stack[stack_size]
            else:
                current_f = heap_f[0]
                cell = _heap_pop(heap_f, heap_h, heap_cell, heap_size)
                heap_size -= 1
            if mark[cell] == closed:
                continue
            mark[cell] = closed
            if cell == goal:
                reached = True
                break
            if heap_size + 8 > capacity:
                capacity *= 2
                grown_f = np.empty(capacity, dtype=np.float64)
                grown_h = np.empty(capacity, dtype=np.float64)
                grown_cell = np.empty(capacity, dtype=np.int32)
                grown_f[:heap_size] = heap_f[:heap_size]
                grown_h[:heap_size] = heap_h[:heap_size]
                grown_cell[:heap_size] = heap_cell[:heap_size]
                heap_f, heap_h, heap_cell = grown_f, grown_h, grown_cell
            y = cell // framed_width - 1
            x = cell - (y + 1) * framed_width - 1
            cell_g = g_cost[cell]
            east = free[cell + 1]
            west = free[cell - 1]
            south = free[cell + framed_width]
            north = free[cell - framed_width]
            for direction in range(8):
                # No corner cutting: a diagonal needs both straight neighbours it passes to be free.
                if direction == 0:
                    passable = east
                elif direction == 1:
                    passable = west
                elif direction == 2:
                    passable = south
                elif direction == 3:
                    passable = north
                elif direction == 4:
                    passable = east and south
                elif direction == 5:
                    passable = west and south
                elif direction == 6:
                    passable = east and north
                else:
                    passable = west and north
                if not passable:
                    continue
                neighbour = cell + step_offset[direction]
                if not free[neighbour]:
                    continue
                neighbour_mark = mark[neighbour]
                if neighbour_mark == closed:
                    continue
                next_g = cell_g + step_cost[direction]
                if neighbour_mark == queued and next_g >= g_cost[neighbour]:
                    continue
                h = _octile(x + step_x[direction], y + step_y[direction], goal_x, goal_y)
                f = next_g + h
                if f >= cost_bound:
                    continue
                mark[neighbour] = queued
                g_cost[neighbour] = next_g
                came_from[neighbour] = cell
                if f == current_f and stack_size < framed_count:
                    same_f_stack[stack_size] = neighbour
                    stack_size += 1
                else:
                    _heap_push(heap_f, heap_h, heap_cell, heap_size, f, h, neighbour)
                    heap_size += 1

        if reached:
            length = 1
            cell = goal
            while came_from[cell] >= 0:
                cell = came_from[cell]
                length += 1
            if path_used + length > path_cells.shape[0]:
                grown = np.empty(max(2 * path_cells.shape[0], path_used + length), dtype=np.int64)
                grown[:path_used] = path_cells[:path_used]
                path_cells = grown
            straight_steps = 0
            diagonal_steps = 0
            cell = goal
            for position in range(path_used + length - 1, path_used - 1, -1):
                y = cell // framed_width - 1
                path_cells[position] = y * width + (cell - (y + 1) * framed_width - 1)
                previous = came_from[cell]
                if previous >= 0:
                    jump = abs(previous - cell)
                    if jump == 1 or jump == framed_width:
                        straight_steps += 1
                    else:
                        diagonal_steps += 1
                cell = previous
            path_used += length
            found[agent] = True
            costs[agent] = straight_steps + diagonal_steps * SQRT2
            offsets[agent + 1] = path_used
    return found, costs, offsets, path_cells[:path_used]


@njit(cache=True)
def _legal_step(blocked: np.ndarray, width: int, from_x: int, from_y: int, to_x: int, to_y: int) -> bool:
    """Whether one move joins two free, distinct cells: an 8-neighbour without cutting a corner."""
    dx = to_x - from_x
    dy = to_y - from_y
    if abs(dx) > 1 or abs(dy) > 1 or (dx == 0 and dy == 0):
        return False
    if dx != 0 and dy != 0:
        return blocked[from_y * width + to_x] == 0 and blocked[to_y * width + from_x] == 0
    return True


@njit(cache=True)
def _cheaper_middle(
    blocked: np.ndarray, width: int, height: int, ax: int, ay: int, mx: int, my: int, cx: int, cy: int
) -> bool:
    """Whether cells a and c, joined through m, are joined more cheaply through another free middle cell.
    Only windows dearer than the octile distance can be, and an optimal path has those only where
    obstacles force them, so nearly every window is settled by the first test."""
    current = (SQRT2 if ax != mx and ay != my else 1.0) + (SQRT2 if mx != cx and my != cy else 1.0)
    span_x = abs(cx - ax)
    span_y = abs(cy - ay)
    if current <= min(span_x, span_y) * SQRT2 + abs(span_x - span_y) + 1e-9:
        return False
    for x in range(max(ax, cx) - 1, min(ax, cx) + 2):
        for y in range(max(ay, cy) - 1, min(ay, cy) + 2):
            if (x == ax and y == ay) or (x == cx and y == cy) or x < 0 or y < 0 or x >= width or y >= height:
                continue
            if blocked[y * width + x] != 0:
                continue
            if not (_legal_step(blocked, width, ax, ay, x, y) and _legal_step(blocked, width, x, y, cx, cy)):
                continue
            cost = (SQRT2 if ax != x and ay != y else 1.0) + (SQRT2 if x != cx and y != cy else 1.0)
            if cost < current - 1e-9:
                return True
    return False


@njit(cache=True)
def _check_paths(
    blocked: np.ndarray, width: int, height: int, claims: np.ndarray, costs: np.ndarray, cells: np.ndarray
) -> tuple[int, int, int]:
    """Full structural check of every path; returns ``(agent, problem, step)``, problem 0 when all pass.

    ``claims`` holds one row per agent: start x, start y, goal x, goal y, found (0 or 1) and path length;
    the paths lie one after another in ``cells``, one ``(x, y)`` row per cell. ``problem`` indexes
    ``_PROBLEMS``; ``step`` is the offending path index, or -1 for the whole path.
    """
    visited_by = np.zeros(width * height, dtype=np.int32)
    end = 0
    for agent in range(claims.shape[0]):
        begin = end
        end = begin + claims[agent, 5]
        if not claims[agent, 4]:
            if end > begin or costs[agent] != 0.0:
                return agent, 1, -1
            continue
        if end == begin:
            return agent, 2, -1
        if cells[begin, 0] != claims[agent, 0] or cells[begin, 1] != claims[agent, 1]:
            return agent, 3, 0
        if cells[end - 1, 0] != claims[agent, 2] or cells[end - 1, 1] != claims[agent, 3]:
            return agent, 4, end - 1 - begin
        straight_steps = 0
        diagonal_steps = 0
        for index in range(begin, end):
            x = cells[index, 0]
            y = cells[index, 1]
            if x < 0 or y < 0 or x >= width or y >= height:
                return agent, 5, index - begin
            cell = y * width + x
            if blocked[cell] != 0:
                return agent, 6, index - begin
            if visited_by[cell] == agent + 1:
                return agent, 7, index - begin
            visited_by[cell] = agent + 1
            if index == begin:
                continue
            previous_x = cells[index - 1, 0]
            previous_y = cells[index - 1, 1]
            if abs(x - previous_x) > 1 or abs(y - previous_y) > 1:
                return agent, 8, index - begin
            if not _legal_step(blocked, width, previous_x, previous_y, x, y):
                return agent, 9, index - begin
            if x != previous_x and y != previous_y:
                diagonal_steps += 1
            else:
                straight_steps += 1
            # A cheap local optimality test on every path: two steps whose ends one legal step joins.
            if index - 2 >= begin and _legal_step(
                blocked, width, cells[index - 2, 0], cells[index - 2, 1], x, y
            ):
                return agent, 10, index - begin
            # And two steps that a cheaper pair of legal steps through another middle cell replaces (a
            # sub-path of a shortest path is shortest, so any such detour proves the path is not optimal).
            if index - 2 >= begin and _cheaper_middle(
                blocked, width, height, cells[index - 2, 0], cells[index - 2, 1], previous_x, previous_y, x, y
            ):
                return agent, 12, index - begin
        if abs(costs[agent] - (straight_steps + diagonal_steps * SQRT2)) > COST_TOLERANCE:
            return agent, 11, -1
    return -1, 0, -1


@njit(cache=True)
def _search_stretch(
    blocked: np.ndarray, width: int, height: int, cells: np.ndarray, first: int, span: int
) -> tuple[float, bool, float]:
    """The cost of the stretch ``cells[first:first + span + 1]`` of a path that passed ``_check_paths``,
    whether a strictly cheaper route joins its ends, and that route's cost.

    One compiled call for the spot check: it returns plain numbers, where building the search's
    one-agent arguments and unpacking its result arrays in Python cost several times the search itself
    on small grids.
    """
    diagonal_steps = 0
    for index in range(first + 1, first + span + 1):
        if cells[index, 0] != cells[index - 1, 0] and cells[index, 1] != cells[index - 1, 1]:
            diagonal_steps += 1
    stretch_cost = (span - diagonal_steps) + diagonal_steps * SQRT2
    endpoints = np.empty((1, 4), dtype=np.int64)
    endpoints[0, 0] = cells[first, 0]
    endpoints[0, 1] = cells[first, 1]
    endpoints[0, 2] = cells[first + span, 0]
    endpoints[0, 3] = cells[first + span, 1]
    bound = np.full(1, stretch_cost - COST_TOLERANCE)
    shorter_found, shorter_cost, _, _ = _search_agents(blocked, width, height, endpoints, bound)
    return stretch_cost, shorter_found[0], shorter_cost[0]


@njit(cache=True)
def _reachable(blocked: np.ndarray, width: int, height: int, start: int, goal: int) -> bool:
    """Whether ``goal`` is reachable from ``start`` (4-connected flood fill from both ends at once).

    Growing both floods one cell at a time stops as soon as either one runs out, so a goal walled into a
    small pocket is settled after visiting about twice the pocket, not the whole map.
    """
    if start == goal:
        return True
    cell_count = width * height
    side = np.zeros(cell_count, dtype=np.int8)  # 0 unseen, 1 reached from start, 2 reached from goal
    queues = np.empty((2, cell_count), dtype=np.int32)
    heads = np.zeros(2, dtype=np.int64)
    tails = np.ones(2, dtype=np.int64)
    queues[0, 0] = start
    queues[1, 0] = goal
    side[start] = 1
    side[goal] = 2
    while heads[0] < tails[0] and heads[1] < tails[1]:
        for flood in range(2):
            cell = queues[flood, heads[flood]]
            heads[flood] += 1
            x = cell % width
            y = cell // width
            for neighbour_index in range(4):
                if neighbour_index == 0:
                    if x + 1 >= width:
                        continue
                    neighbour = cell + 1
                elif neighbour_index == 1:
                    if x == 0:
                        continue
                    neighbour = cell - 1
                elif neighbour_index == 2:
                    if y + 1 >= height:
                        continue
                    neighbour = cell + width
                else:
                    if y == 0:
                        continue
                    neighbour = cell - width
                if blocked[neighbour] != 0:
                    continue
                if side[neighbour] == 0:
                    side[neighbour] = flood + 1
                    queues[flood, tails[flood]] = neighbour
                    tails[flood] += 1
                elif side[neighbour] != flood + 1:
                    return True
    return False
