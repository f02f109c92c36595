"""Security defaults: token auth on and no dashboard on the embedded Ray, no unsafe loading
or evaluation anywhere in the code, no storage path that escapes its root."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for pkg in ("model", "trainer", "sweeps", "results") for p in (ROOT / pkg).rglob("*.py")]


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_the_embedded_ray_keeps_token_auth_and_runs_no_dashboard(local_ray):
    import ray
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert is_token_auth_enabled()
    node = ray._private.worker.global_worker.node
    assert not node.address_info.get("webui_url")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_eval_exec_pickle_or_unsafe_torch_load(path):
    for node, name in calls(path):
        assert name not in ("eval", "exec", "pickle.load", "pickle.loads", "yaml.load"), \
            f"{path}:{node.lineno}: {name}"
        if name == "torch.load":
            kw = {k.arg: k.value for k in node.keywords}
            assert "weights_only" in kw and ast.literal_eval(kw["weights_only"]) is True, \
                f"{path}:{node.lineno}: torch.load without weights_only=True"


def test_checkpoints_load_with_weights_only(tmp_path):
    import torch

    from ablate.trainer.train import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"x": Payload()}, tmp_path / "state.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", ["..", "../up", "/abs", "a/b", "a\\b", ".hidden", "", "x" * 101])
def test_sweep_names_cannot_leave_the_storage_root(name):
    from ablate.sweeps.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="sweep.name"):
        parse_spec({"sweep": {"name": name}})
