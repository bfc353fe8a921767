"""The package's structure, drawn from its imports (lazy ones included): no circle, no arrow back up."""

import ast
from pathlib import Path

import tcube

PACKAGE = Path(tcube.__file__).parent
#: Floors, lowest first: a module imports from its own floor or lower ones, never higher.
FLOORS = (
    ("errors", "defaults", "bands", "metrics", "data", "entropy", "bitstream", "masks", "validate", "residual",
     "residual_copies", "residual_kernels", "outputs", "geo", "readers"),
    ("models", "baselines"),
    ("settings",),
    ("api",),
    ("zarr_codecs", "gapfill"),
    ("stacks", "jobs", "datasets", "parallel", "preview"),
    ("", "bench", "demo", "train", "cli"),
)
#: Module names of libraries users import next to tcube: no tcube module may shadow one.
LIBRARIES = {"io", "xarray", "zarr", "numpy", "torch", "dask", "json", "typing", "types", "codecs"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports() -> dict[str, set[str]]:
    """Module (relative to tcube, "" for the package) -> the tcube modules it imports."""
    modules = _modules()

    def known(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tcube":
                base = node.module.removeprefix("tcube").lstrip(".")
                targets = [known(f"{base}.{a.name}".lstrip(".")) for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [known(a.name.removeprefix("tcube").lstrip(".")) for a in node.names
                           if a.name.split(".")[0] == "tcube"]
            else:
                continue
            graph[module] |= {t for t in targets if t != module}
    return graph


def _floor(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(FLOORS) if top in names)


def test_every_module_has_a_floor():
    assert [m for m in _modules() if not any(m.split(".")[0] in f for f in FLOORS)] == []


def test_no_import_climbs_to_a_higher_floor():
    graph = _imports()
    up = [f"{m or 'tcube'} -> {t or 'tcube'}" for m, targets in graph.items() for t in targets
          if _floor(t) > _floor(m)]
    assert up == []


def test_no_import_circle():
    graph, state, circles = _imports(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                circles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []


def test_no_module_shadows_a_library():
    assert sorted(m for m in _modules() if m.split(".")[-1] in LIBRARIES) == []


def _tcube_module(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name.removeprefix("tcube").lstrip(".") if name.split(".")[0] == "tcube" else None


def test_tcube_compress_calls_down_but_for_the_callbacks_it_hands_down(tmp_path):
    """Following ``tcube compress`` from the command line to the coder: every call from one tcube
    module into another goes to the same floor or a lower one, but for the callbacks a caller hands
    down (the progress bar, the writer of a store's skeleton). Calls that zarr or xarray make are not
    tcube's."""
    import sys

    import xarray as xr

    from tcube.bands import L2A_BANDS
    from tcube.cli import main

    cube = tcube.data.load_sample_cube()[:2, :, :64, :64]
    xr.Dataset({b: (("time", "y", "x"), cube[:, i]) for i, b in enumerate(L2A_BANDS)}).to_netcdf(tmp_path / "in.nc")
    climbs, entered = set(), set()

    def profile(frame, event, arg):
        callee = _tcube_module(frame) if event == "call" else None
        if callee is None or frame.f_back is None:
            return
        caller = _tcube_module(frame.f_back)  # a library in between: its call, not tcube's
        if caller is not None and caller != callee:
            entered.add(callee)
            if _floor(callee) > _floor(caller):
                climbs.add(f"{caller} -> {callee}.{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        main(["compress", str(tmp_path / "in.nc"), str(tmp_path / "out.zarr"), "--quality", "4", "--quiet"])
    finally:
        sys.setprofile(None)
    assert {"settings", "jobs", "stacks", "zarr_codecs", "api.modes", "api.core", "bitstream"} <= entered
    assert climbs <= {"jobs -> cli.__call__", "outputs -> jobs.skeleton"}, climbs
