"""eval.py as users run it: exit codes, printed tables, files written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gru_jax.cli.eval import main
from gru_jax.eval import metrics as scoring
from gru_jax.eval.database import enroll, open_database, verify
from gru_jax.infer.export import XVECTOR_DIR_FILES, load_kaldi, load_npz, speaker_vectors

REPO = Path(__file__).resolve().parents[2]


def eval_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "eval.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),  # the test devices (XLA_FLAGS) included
        timeout=300,
    )


def speaker_files(run, list_file):
    files = {}
    for line in list_file.read_text().splitlines():
        speaker, rel = line.split()
        files.setdefault(speaker, []).append(str(run.corpus.wav_dir / rel))
    return files


def test_evaluate_prints_the_table_and_writes_the_reports(run, tmp_path):
    out = tmp_path / "eval"
    done = eval_py(
        "--checkpoint", str(run.run_dir), "--data", str(run.corpus.root), "--out", str(out),
        "--far", "0.1", "--store-dir", str(tmp_path / "store"), "--workers", "1", "--no-progress",
        "--plda",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    written = ["det.png", "scores.png", "det_enrolled.png", "det_plda.png", "scores.txt"]
    for name in (*written, "scores_plda.txt", "embeddings.npz"):
        assert (out / name).stat().st_size > 0, name
    text = done.stdout
    # the bare form found the demo corpus's lists and evaluated both tasks
    assert results["inputs"]["trials"].endswith("trials.txt")
    assert f"{results['counts']['trials_scored']} of" in text
    cosine = results["verification"]["cosine"]
    row = re.search(r"^cosine\s+all\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
    assert row, text
    trials, targets, eer_percent, dcf1, dcf5 = row.groups()
    assert int(trials) == cosine["n_target"] + cosine["n_nontarget"]
    assert int(targets) == cosine["n_target"]
    assert float(eer_percent) == pytest.approx(100 * cosine["eer"], abs=1e-4)
    assert float(dcf1) == pytest.approx(cosine["min_dcf_0.01"], abs=1e-4)
    assert float(dcf5) == pytest.approx(cosine["min_dcf_0.05"], abs=1e-4)
    top1 = 100 * results["identification"]["all"]["top1"]
    assert re.search(rf"^all \(3 utterances\)\s+6\s+30\s+{top1:.4f}", text, re.M), text
    # a bare --plda keeps every dimension of the embedding
    plda = results["verification"]["plda"]
    assert plda["dim"] == run.model.embedding_dim
    assert re.search(
        rf"^PLDA\s+all\s+{int(trials)}\s+{targets}\s+{100 * plda['eer']:.4f}", text, re.M
    )
    # --far: the calibrated threshold admits at most 10% of the impostors
    assert results["calibration"]["operating_point"] == "far=0.1"
    assert f"{results['calibration']['threshold']:.4f}" in text
    # the same checkpoint and features as the in-process evaluation: the same numbers
    assert cosine["eer"] == pytest.approx(run.results["verification"]["cosine"]["eer"], abs=1e-6)
    labels = np.array([int(x.split()[2]) for x in (out / "scores.txt").read_text().splitlines()])
    scores = np.array([float(x.split()[3]) for x in (out / "scores.txt").read_text().splitlines()])
    assert cosine["far_threshold"] == pytest.approx(
        scoring.threshold_at_far(scores, labels, 0.1), abs=1e-5
    )


def test_verify_exit_code_follows_the_decision(run, tmp_path):
    files = speaker_files(run, run.corpus.enroll_list)
    tests = speaker_files(run, run.corpus.test_list)
    db_path = tmp_path / "speakers.npz"
    db = open_database(db_path, run.model, create=True)
    for speaker, own in files.items():
        enroll(db, speaker, own)
    speaker = sorted(files)[0]
    audio = tests[speaker][0]
    score, accepted = verify(open_database(db_path, run.model), audio, speaker)
    done = eval_py(
        "verify", "--checkpoint", str(run.run_dir), "--db", str(db_path), "--speaker", speaker,
        audio,
    )  # fmt: skip
    assert done.returncode == (0 if accepted else 1), done.stderr
    assert f"score {score:.4f}" in done.stdout
    assert ("ACCEPT" if accepted else "REJECT") in done.stdout
    threshold = run.results["calibration"]["threshold"]
    assert f"threshold {threshold:.4f}" in done.stdout and "results.json" in done.stdout

    # the same request in-process, with thresholds that force each decision
    common = ["verify", "--checkpoint", str(run.run_dir), "--db", str(db_path), "--speaker"]
    assert main([*common, speaker, audio, "--threshold", "-1.01"]) == 0
    assert main([*common, speaker, audio, "--threshold", "1.01"]) == 1


def test_user_errors_exit_2_with_a_message(run, tmp_path, capsys):
    db_path = tmp_path / "speakers.npz"
    first, own = next(iter(speaker_files(run, run.corpus.enroll_list).items()))
    code = main(["enroll", "--checkpoint", str(run.run_dir), "--db", str(db_path), "--speaker",
                 first, *own[:1]])  # fmt: skip
    assert code == 0 and "enrolled" in capsys.readouterr().out
    assert main(["verify", "--checkpoint", str(run.run_dir), "--db", str(db_path),
                 "--speaker", "nobody", own[0]]) == 2  # fmt: skip
    assert f"error: unknown speaker 'nobody' (the 1 enrolled in {db_path}: {first})" in (
        capsys.readouterr().err
    )
    trials = tmp_path / "trials.txt"
    trials.write_text("1 id1/a/1.wav id2/b/2.wav\n")
    assert main(["--checkpoint", str(run.run_dir), "--data", str(run.corpus.root),
                 "--trials", str(trials)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: 2 of 2 referenced utterances have no audio file")
    assert "id1/a/1" in err and "id2/b/2" in err and "Traceback" not in err
    assert main(["identify", "--checkpoint", str(run.run_dir), "--db", str(tmp_path / "none.npz"),
                 own[0]]) == 2  # fmt: skip
    assert "no speaker database" in capsys.readouterr().err
    assert main(["verify", "--checkpoint", str(run.run_dir), "--db", str(db_path),
                 "--speaker", first, "--average-last", "9", own[0]]) == 2  # fmt: skip
    assert "cannot average the last 9 checkpoints" in capsys.readouterr().err


def test_embed_writes_npz_and_kaldi_speaker_vectors(run, tmp_path, capsys):
    out, ark = tmp_path / "spk.npz", tmp_path / "spk.ark"
    code = main([
        "embed", "--checkpoint", str(run.run_dir), "--data", str(run.corpus.root),
        "--list", str(run.corpus.enroll_list), "--out", str(out), "--ark", str(ark),
        "--speaker-level", "--store-dir", str(tmp_path / "store"), "--workers", "1",
        "--no-progress",
    ])  # fmt: skip
    assert code == 0
    out_text = capsys.readouterr().out
    assert "wrote 6 speaker embeddings (dim 32)" in out_text
    ids, vectors = load_npz(run.eval_dir / "embeddings.npz")
    with np.load(run.eval_dir / "embeddings.npz") as data:
        speakers = data["speakers"]
    enrolled = {line.split()[1].rsplit(".", 1)[0] for line in
                run.corpus.enroll_list.read_text().splitlines()}  # fmt: skip
    keep = np.array([i in enrolled for i in ids.tolist()])
    names, means, counts = speaker_vectors(vectors[keep], speakers[keep])
    for loaded_ids, loaded in (load_npz(out), load_kaldi(tmp_path / "spk.scp")):
        assert loaded_ids.tolist() == names.tolist()
        np.testing.assert_allclose(loaded, means, rtol=1e-5, atol=1e-6)
    # the Kaldi tables beside the ark: VoxCeleb ids (speaker/session/n) need no note
    assert (tmp_path / "utt2spk").read_text() == "".join(
        f"{u} {s}\n" for u, s in zip(ids[keep].tolist(), speakers[keep].tolist(), strict=True)
    )
    assert (tmp_path / "num_utts.ark").read_text() == "".join(
        f"{n} {c} \n" for n, c in zip(names.tolist(), counts.tolist(), strict=True)
    )
    assert len((tmp_path / "spk2utt").read_text().splitlines()) == 6
    assert "note:" not in out_text


def kaldi_data_dir(run, root: Path, group, prefixed: bool = True) -> dict[str, tuple[str, str]]:
    """A Kaldi data dir of the enrolment files; `group` names each file's Kaldi speaker, which
    starts its utterance ids when `prefixed` (Kaldi's convention).

    Returns Kaldi utterance id -> (Kaldi speaker, the utterance's id in run.corpus).
    """
    root.mkdir(parents=True)
    table = {}
    for n, line in enumerate(run.corpus.enroll_list.read_text().splitlines()):
        speaker, rel = line.split()
        kaldi_speaker = group(speaker, n)
        utt = f"{kaldi_speaker if prefixed else 'utt'}-{n:03d}"
        table[utt] = (kaldi_speaker, str(run.corpus.wav_dir / rel))
    unsorted = sorted(table, reverse=True)  # the reader must not need sorted files
    (root / "wav.scp").write_text("".join(f"{u} {table[u][1]}\n" for u in unsorted))
    (root / "utt2spk").write_text("".join(f"{u} {table[u][0]}\n" for u in unsorted))
    relpath = {u: Path(p).relative_to(run.corpus.wav_dir).with_suffix("").as_posix()
               for u, (_, p) in table.items()}  # fmt: skip
    return {u: (spk, relpath[u]) for u, (spk, _) in table.items()}


def embed_command(run, data: Path, store: Path) -> list[str]:
    return ["embed", "--checkpoint", str(run.run_dir), "--data", str(data),
            "--store-dir", str(store), "--workers", "1", "--no-progress"]  # fmt: skip


def test_embed_xvector_dir_honours_a_kaldi_data_dirs_utt2spk(run, tmp_path, capsys):
    # two corpus speakers per Kaldi speaker: the speaker vectors must follow utt2spk, not folders
    order = sorted({line.split()[0] for line in run.corpus.enroll_list.read_text().splitlines()})
    data = tmp_path / "data" / "enroll"
    table = kaldi_data_dir(run, data, lambda speaker, _: f"g{order.index(speaker) // 2}")
    out = tmp_path / "exp" / "xvectors_enroll"
    common = embed_command(run, data, tmp_path / "store")
    assert main([*common, "--xvector-dir", str(out)]) == 0
    text = capsys.readouterr().out
    n = len(table)
    assert f"wrote {n} utterance and 3 speaker embeddings (dim 32) to {out}" in text, text
    assert "note:" not in text  # g0-000 style ids: speakers are prefixes of their utterances
    assert sorted(p.name for p in out.iterdir()) == sorted(XVECTOR_DIR_FILES)
    utts = sorted(table)
    assert (out / "utt2spk").read_text() == "".join(f"{u} {table[u][0]}\n" for u in utts)
    assert (out / "spk2utt").read_text() == "".join(
        f"{g} {' '.join(u for u in utts if table[u][0] == g)}\n" for g in ("g0", "g1", "g2")
    )
    assert (out / "num_utts.ark").read_text() == "".join(
        f"{g} {sum(spk == g for spk, _ in table.values())} \n" for g in ("g0", "g1", "g2")
    )
    # the same vectors as the evaluation's (same audio, same checkpoint), now keyed by Kaldi ids
    eval_ids, eval_vectors = load_npz(run.eval_dir / "embeddings.npz")
    row = {utt: i for i, utt in enumerate(eval_ids.tolist())}
    expected = eval_vectors[[row[table[u][1]] for u in utts]]
    ids, vectors = load_kaldi(out / "xvector.scp")
    assert ids.tolist() == utts
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    names, means, _ = speaker_vectors(expected, [table[u][0] for u in utts])
    spk_ids, spk_vectors = load_kaldi(out / "spk_xvector.scp")
    assert spk_ids.tolist() == names.tolist() == ["g0", "g1", "g2"]
    np.testing.assert_allclose(spk_vectors, means, rtol=1e-5, atol=1e-6)


def test_embed_kaldi_tables_beside_outputs_and_user_errors(run, tmp_path, capsys):
    # speakers that are not prefixes of their utterance ids: utt-000 by a, utt-001 by b, ...
    data = tmp_path / "data"
    table = kaldi_data_dir(run, data, lambda _, n: "ab"[n % 2], prefixed=False)
    common = embed_command(run, data, tmp_path / "store")
    out = tmp_path / "out"
    assert main([*common, "--ark", str(out / "spk.ark"), "--speaker-level"]) == 0
    text = capsys.readouterr().out
    assert f"wrote utt2spk, spk2utt, num_utts.ark to {out}" in text
    assert "note: utterance" in text and "validate_data_dir.sh" in text  # reported, not renamed
    assert (out / "utt2spk").read_text() == "".join(f"{u} {table[u][0]}\n" for u in sorted(table))
    assert load_kaldi(out / "spk.scp")[0].tolist() == ["a", "b"]
    # npz only, into the Kaldi data dir itself: the vectors, but never its own utt2spk replaced
    utt2spk = (data / "utt2spk").read_text()
    assert main([*common, "--out", str(data / "emb.npz")]) == 0
    assert "utt2spk/spk2utt not written" in capsys.readouterr().out
    assert (data / "utt2spk").read_text() == utt2spk and not (data / "spk2utt").exists()
    assert load_npz(data / "emb.npz")[0].tolist() == sorted(table)
    # refused before any embedding work, exit 2 with a message
    for args, message in (
        (["--xvector-dir", str(data)], "is a Kaldi data dir"),
        (["--xvector-dir", str(out), "--ark", str(out / "xvector.ark")], "writes"),
        (["--xvector-dir", str(out), "--data", str(tmp_path / "nowhere")], "nowhere"),
    ):
        assert main([*common, *args]) == 2
        assert message in capsys.readouterr().err
    audio = table[sorted(table)[0]]
    wav = str(run.corpus.wav_dir / f"{audio[1]}.wav")
    assert main(["embed", "--checkpoint", str(run.run_dir), "--xvector-dir", str(out), wav]) == 2
    assert "need a corpus (--data)" in capsys.readouterr().err
    assert not (data / "xvector.scp").exists() and not (out / "xvector.scp").exists()
