import os
import subprocess
import sys

import yaml

from conftest import REPO, repo_params_dict


def run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "momentum_ssl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def write_params(tmp_path, **data_section):
    params = repo_params_dict()
    params["data"].update(out_dir=str(tmp_path / "beton"), **data_section)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_convert_writes_the_betons(tmp_path):
    done = run("convert", "--params", str(write_params(tmp_path, dataset="digits")), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "train 1437, test 360 images" in done.stdout
    assert {p.name for p in (tmp_path / "beton" / "digits").iterdir()} == {
        "train.beton", "test.beton", "meta.json"}


def test_bad_params_fail_before_any_work_with_one_line(tmp_path):
    path = write_params(tmp_path, dataset="digits", jpeg_quality=0)
    done = run("convert", "--params", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: data.jpeg_quality: must be in 1..100, got 0"]
    assert not (tmp_path / "beton").exists()


def test_missing_dataset_error_says_how_to_get_it(tmp_path):
    path = write_params(tmp_path, root=str(tmp_path / "absent"))
    done = run("convert", "--params", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert "apt-get install dataset-fashion-mnist" in done.stderr
    assert "Traceback" not in done.stderr


def test_params_prints_the_resolved_file(tmp_path):
    done = run("params", cwd=REPO)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["augment"]["crop_scale"] == [0.2, 1.0]
    assert resolved["grid"]["simclr-none"] == {"method": "simclr", "scope": "none", "k": 1,
                                               "residual": False, "gpus": 1}


def test_pretrain_refuses_a_stale_plan(tmp_path, monkeypatch, capsys):
    from conftest import TINY, make_params
    from momentum_ssl.cli import main
    from momentum_ssl.config import to_dict

    monkeypatch.chdir(tmp_path)
    params = make_params(tmp_path, **TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))
    assert main(["plan", "--run", "byol-full"]) == 0
    data = to_dict(params)
    data["momentum"]["tau"] = 0.9
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["pretrain", "--run", "byol-full"]) == 2
    err = capsys.readouterr().err
    assert "results/plan/byol-full/s0.yaml was written for other params" in err
    assert "rerun python -m momentum_ssl plan --run byol-full --seed 0 first" in err


def tiny_params_file(tmp_path, monkeypatch):
    from conftest import TINY, make_params
    from momentum_ssl.config import to_dict

    monkeypatch.chdir(tmp_path)
    params = make_params(tmp_path, **TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(params), sort_keys=False))


def test_verify_names_a_damaged_stored_model_before_it_trains(tmp_path, monkeypatch, capsys):
    from momentum_ssl.cli import main

    tiny_params_file(tmp_path, monkeypatch)
    assert main(["plan", "--run", "byol-full"]) == 0
    stored = tmp_path / "results" / "runs" / "byol-full" / "s0" / "model.pt"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"PK\x03\x04 a cut copy")
    capsys.readouterr()
    assert main(["verify", "--run", "byol-full"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: results/runs/byol-full/s0/model.pt is truncated or garbled"), err
    assert err[0].endswith("rewrite it: dvc repro pretrain@byol-full-0")
    assert not (tmp_path / "results" / "verify").exists()  # nothing trained nor written


def test_run_names_a_grid_run_or_for_evaluation_a_baseline(tmp_path, monkeypatch, capsys):
    from momentum_ssl.cli import main

    tiny_params_file(tmp_path, monkeypatch)
    assert main(["plan", "--run", "raw"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "choose one of: byol-full, byol-projector, simclr-none")
    assert main(["probe", "--run", "nope"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "choose one of: byol-full, byol-projector, simclr-none, raw, random")


def test_every_command_takes_the_flags_its_table_entry_lists():
    from momentum_ssl.cli import FLAGS, STAGES, build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "stage").choices
    assert set(commands) == set(STAGES)
    for name, stage in STAGES.items():
        taken = [a.option_strings[0] if a.option_strings else a.dest
                 for a in commands[name]._actions if a.dest != "help"]
        assert taken == [FLAGS[f][0][0] for f in stage.flags], name
