"""Item 13 of the reliability table: a CPU sweep whose trial cannot fit in this machine's
memory is refused before anything starts, with the numbers, instead of being killed."""

from ablate.cli import main
from ablate.sweeps.plan import host_memory


def test_item13_medium_on_a_cpu_only_machine_is_refused_for_host_memory(tmp_path, capsys):
    spec = tmp_path / "big.toml"
    spec.write_text('[sweep]\nname = "big"\npreset = "medium"\n[resources]\nworkers = 2\n'
                    '[fixed]\nnum_iterations = 10\n')
    for argv in (["--dry-run"], []):
        assert main(["sweep", str(spec), "--storage", str(tmp_path / "runs"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "big.toml: resources: trial 0 needs an estimated" in err[0], err
        assert f"this machine has {host_memory() / 2**30:.1f} GB" in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_tiny_cpu_sweep_fits(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text('[sweep]\nname = "ok"\n[fixed]\nnum_iterations = 10\n')
    assert main(["sweep", str(spec), "--dry-run"]) == 0
