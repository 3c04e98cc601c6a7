import json

import numpy as np
import pytest
import soundfile as sf

from gru_jax.data import augmentation
from gru_jax.data.augmentation import (
    AugmentConfig,
    Copy,
    add_noise,
    augment,
    coloured_noise,
    copies_of,
    copy_rng,
    copy_speaker,
    reverberate,
    source_speaker,
)
from gru_jax.data.corpora import Utterance, read_corpus
from gru_jax.data.features import FeatureConfig
from gru_jax.data.prepare import corpus_part, prepare_parts, split_speakers, store_dir_for
from gru_jax.data.store import StoreError, build_store
from gru_jax.synth import make_corpus
from tests.data._audio import SR, speechlike

CFG = FeatureConfig(n_mels=24)
AUG = AugmentConfig(noise=1, reverb=1, speed=(0.9, 1.1), seed=3)


def _snr_db(wave, noise):
    return 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(noise**2))


def _spectral_peak_hz(x):
    return np.argmax(np.abs(np.fft.rfft(x))) * SR / len(x)


@pytest.fixture
def corpus(tmp_path):
    utts = []
    for k in range(10):
        spk = f"id1000{k % 5}"
        path = tmp_path / "wav" / spk / f"u{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, speechlike(0.6 + 0.05 * k, seed=k), SR)
        utts.append(Utterance(f"{spk}/u{k}", spk, str(path)))
    return utts


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_noise_copy_has_the_requested_snr(snr):
    wave = speechlike(1.0)
    for seed in range(4):  # every generated kind of noise
        rng = np.random.default_rng(seed)
        noisy, noise = add_noise(wave, rng, AugmentConfig(snr_db=(snr, snr)), SR)
        np.testing.assert_allclose(noisy - wave, noise, atol=1e-6)
        assert abs(_snr_db(wave, noise) - snr) < 0.5


def test_copies_are_deterministic_whatever_the_order():
    wave = speechlike(0.5)
    copies = copies_of("a/u1", AUG) + copies_of("b/u2", AUG)
    forward = [augment(wave, c, AUG, SR) for c in copies]
    backward = [augment(wave, c, AUG, SR) for c in reversed(copies)][::-1]
    for a, b in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(forward[0], forward[len(forward) // 2])  # another utterance
    other_seed = AugmentConfig(noise=1, seed=4)
    assert not np.array_equal(forward[0], augment(wave, copies[0], other_seed, SR))


def test_speed_copy_length_and_new_speaker():
    wave = speechlike(1.0)
    for k, factor in enumerate(AUG.speed):
        copy = Copy("id10001/u1", "speed", k)
        out = augment(wave, copy, AUG, SR)
        assert abs(len(out) - len(wave) / factor) <= 2
        assert copy_speaker("id10001", copy.tag(AUG)) == f"sp{factor:g}-id10001"
        assert source_speaker(f"sp{factor:g}-id10001", copy.tag(AUG)) == "id10001"
    assert copy_speaker("id10001", "noise0") == "id10001"


def test_reverb_copy_differs_and_keeps_length():
    wave = speechlike(1.0)
    out = augment(wave, Copy("u", "reverb", 0), AUG, SR)
    assert len(out) == len(wave) and np.isfinite(out).all()
    assert np.corrcoef(out, wave)[0, 1] < 0.99
    np.testing.assert_allclose(np.mean(out**2), np.mean(wave**2), rtol=1e-3)


def test_reverb_reads_rir_dir(tmp_path):
    rir = np.zeros(800, np.float32)
    rir[100] = 0.5  # a pure delay: the aligned, power-normalised copy is the source itself
    sf.write(tmp_path / "rir.wav", rir, SR)
    wave = speechlike(0.5)
    cfg = AugmentConfig(reverb=1, rir_dir=str(tmp_path))
    out = reverberate(wave, copy_rng(cfg, Copy("u", "reverb", 0)), cfg, SR)
    np.testing.assert_allclose(out, wave, atol=1e-5)


def test_musan_layout_is_used(tmp_path):
    t = np.arange(2 * SR) / SR
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", 0.3 * np.sin(2 * np.pi * 1000 * t), SR)
    cfg = AugmentConfig(noise=1, musan_dir=str(tmp_path), musan_noise_snr_db=(5.0, 5.0))
    wave = speechlike(0.5)
    for seed in range(3):
        _, noise = add_noise(wave, np.random.default_rng(seed), cfg, SR)
        assert abs(_spectral_peak_hz(noise) - 1000) < 5
        assert abs(_snr_db(wave, noise) - 5.0) < 0.5
    # Only speech/: babble, a sum of several files.
    (tmp_path / "babble" / "speech").mkdir(parents=True)
    for k, hz in enumerate((300, 700, 1100, 1500, 1900, 2300, 2700)):
        sf.write(tmp_path / "babble" / "speech" / f"s{k}.wav", 0.3 * np.sin(2 * np.pi * hz * t), SR)
    babble_cfg = AugmentConfig(noise=1, musan_dir=str(tmp_path / "babble"))
    _, babble = add_noise(wave, np.random.default_rng(0), babble_cfg, SR)
    spectrum = np.abs(np.fft.rfft(babble))
    assert np.sum(spectrum > 0.1 * spectrum.max()) >= 2  # more than one talker's tone


def test_each_musan_kind_has_its_own_snr_range(tmp_path):
    """Babble at 0 dB drowns a voice where stationary noise at 0 dB masks it: Kaldi's and
    WeSpeaker's recipes draw each kind from its own range, and so do the copies."""
    t = np.arange(2 * SR) / SR
    # A tone per subdirectory tells the kinds apart.
    tones = {"noise": 500, "music": 1500, "speech": 3000}
    for sub, hz in tones.items():
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "a.wav", 0.3 * np.sin(2 * np.pi * hz * t), SR)
    cfg = AugmentConfig(noise=1, musan_dir=str(tmp_path))
    ranges = {500: (0.0, 15.0), 1500: (5.0, 15.0), 3000: (13.0, 20.0)}
    wave = speechlike(0.5)
    seen = set()
    for seed in range(24):
        _, noise = add_noise(wave, np.random.default_rng(seed), cfg, SR)
        kind = min(ranges, key=lambda hz: abs(hz - _spectral_peak_hz(noise)))
        low, high = ranges[kind]
        assert low - 0.5 < _snr_db(wave, noise) < high + 0.5, kind
        seen.add(kind)
    assert seen == set(ranges)
    with pytest.raises(ValueError, match="musan_babble_snr_db"):
        AugmentConfig(musan_babble_snr_db=(20.0, 13.0)).validate()


def test_a_long_noise_file_is_read_only_where_it_is_used(tmp_path, monkeypatch):
    """Music files last minutes: a copy reads one utterance's length of one, from anywhere."""
    (tmp_path / "music").mkdir()
    ramp = np.linspace(-0.9, 0.9, 60 * SR, dtype=np.float32)  # each sample tells its position
    sf.write(tmp_path / "music" / "long.wav", ramp, SR, subtype="FLOAT")
    reads = []
    real = augmentation.load_audio
    monkeypatch.setattr(augmentation, "load_audio", lambda *a: reads.append(a[2:]) or real(*a))
    cfg = AugmentConfig(noise=1, musan_dir=str(tmp_path))
    wave = speechlike(0.5)
    starts = []
    for seed in range(4):
        _, noise = add_noise(wave, np.random.default_rng(seed), cfg, SR)
        step = np.diff(noise.astype(np.float64))
        np.testing.assert_allclose(step, np.median(step), rtol=0.1)  # one unbroken stretch
        starts.append(reads[-1][0])
    assert all(end - start == pytest.approx(len(wave) / SR) for start, end in reads)
    assert len(set(starts)) == 4 and max(starts) < 60 - 0.5


def test_store_holds_the_copies(corpus, tmp_path):
    store = build_store(corpus, tmp_path / "s", CFG, workers=1, progress=False, augment=AUG)
    n = len(corpus)
    assert len(store) == 5 * n
    assert store.manifest["augmented"] == {"noise": n, "reverb": n, "speed": 2 * n}
    assert store.manifest["n_speakers"] == 3 * 5
    i = store.index_of("id10001/u1#sp0.9")
    assert store.speakers[i] == "sp0.9-id10001" and store.source_speakers[i] == "id10001"
    j = store.index_of("id10001/u1#noise0")
    assert store.speakers[j] == "id10001" and store.augment[j] == "noise0"
    assert store.lengths[i] > store.lengths[store.index_of("id10001/u1")]
    assert not np.array_equal(store.read(j), store.read(store.index_of("id10001/u1")))
    # Asked again (the next run), the finished store is reused as it is, not refused or rebuilt.
    built = {f: f.stat().st_mtime_ns for f in store.path.iterdir()}
    reopened = build_store(corpus, tmp_path / "s", CFG, workers=1, progress=False, augment=AUG)
    assert list(reopened.ids) == list(store.ids)
    assert {f: f.stat().st_mtime_ns for f in store.path.iterdir()} == built
    # Another worker count and order of the corpus give the same features.
    again = build_store(
        corpus[::-1], tmp_path / "s2", CFG, workers=2, progress=False, augment=AUG, shard_size=7
    )
    assert list(again.ids) == list(store.ids)
    for k in range(len(store)):
        np.testing.assert_array_equal(again.read(k), store.read(k))


def test_store_key_changes_only_with_copies(corpus, tmp_path):
    # The key the default FeatureConfig gave before augmentation existed.
    before = tmp_path / "features" / "x-58d0065890-8551e400ddc0"
    assert store_dir_for("/tmp/x", None, FeatureConfig(), tmp_path) == before
    assert store_dir_for("/tmp/x", None, FeatureConfig(), tmp_path, augment=AugmentConfig()) == (
        before
    )
    assert store_dir_for("/tmp/x", None, FeatureConfig(), tmp_path, augment=AUG) != before
    plain = build_store(
        corpus, tmp_path / "s", CFG, workers=1, progress=False, augment=AugmentConfig(seed=5)
    )
    manifest = json.loads((plain.path / "manifest.json").read_text())
    assert "augment" not in manifest and "augmented" not in manifest
    assert len(plain) == len(corpus) and set(plain.augment) == {""}
    with pytest.raises(StoreError, match="augmentation"):
        build_store(corpus, tmp_path / "s", CFG, workers=1, progress=False, augment=AUG)


def test_validation_holds_no_copies(corpus, tmp_path):
    store = build_store(corpus, tmp_path / "s", CFG, workers=1, progress=False, augment=AUG)
    plain = build_store(corpus, tmp_path / "p", CFG, workers=1, progress=False)
    data = split_speakers(store, 2, seed=1)
    val = set(store.speakers[data.val_indices].tolist())
    assert val == set(plain.speakers[split_speakers(plain, 2, seed=1).val_indices].tolist())
    assert len(val) == 2 and set(store.augment[data.val_indices].tolist()) == {""}
    assert len(data.val_indices) == np.isin(plain.speakers, list(val)).sum()
    assert not np.isin(store.source_speakers[data.train_indices], list(val)).any()
    speed_of_val = {f"sp{f:g}-{s}" for f in AUG.speed for s in val}
    assert not speed_of_val & set(data.class_names)
    assert len(data.class_names) == 3 * 3  # three training speakers and their speed copies
    assert set(store.augment[data.train_indices].tolist()) == {"", "noise0", "reverb0"} | {
        f"sp{f:g}" for f in AUG.speed
    }


def test_set_overrides_reach_the_augment_section():
    from gru_jax.train.config import TrainConfig, with_overrides

    cfg = with_overrides(
        TrainConfig(),
        {
            "data.augment.noise": "2",
            "data.augment.speed": "0.9,1.1",
            "data.augment.musan_dir": "/m",
        },
    )
    assert cfg.data.augment == AugmentConfig(noise=2, speed=(0.9, 1.1), musan_dir="/m")
    with pytest.raises(ValueError, match="speed"):
        with_overrides(TrainConfig(), {"data.augment.speed": "1.0"})


def test_each_process_part_holds_its_own_utterances_and_their_copies(tmp_path):
    """Multi-host data with copies: a part's store has its utterances and exactly their copies,
    the parts together train on every row the single store would, and agree on the classes."""
    info = make_corpus(tmp_path / "c", n_speakers=6, n_utterances=3, seed=2, progress=False)
    aug = AugmentConfig(noise=1, speed=(0.9,), seed=3)
    kw = dict(list_file=str(info.train_list), workers=1, progress=False, augment=aug)
    data = prepare_parts(info.wav_dir, CFG, [0, 1], 2, 1, 0, store_dir=tmp_path / "p", **kw)
    utterances = read_corpus(str(info.wav_dir), str(info.train_list))
    (val,) = {s for p in data.parts for s in p.store.speakers[p.val_indices]}
    trained = []
    for part in data.parts:
        own = {u.utt_id for u in corpus_part(utterances, part.index, 2)}
        assert {i.split("#")[0] for i in part.store.ids} == own
        assert len(part.store) == 3 * len(own)  # the original, its noise copy, its speed copy
        assert set(part.store.augment[part.val_indices].tolist()) == {""}
        names = [data.class_names[k] for k in part.train_labels]
        assert names == part.store.speakers[part.train_indices].tolist()
        assert val not in part.store.source_speakers[part.train_indices]
        trained += part.store.ids[part.train_indices].tolist()
    whole = prepare_parts(info.wav_dir, CFG, [0], 1, 1, 0, store_dir=tmp_path / "w", **kw)
    (single,) = whole.parts
    assert whole.class_names == data.class_names and f"sp0.9-{val}" not in data.class_names
    assert sorted(trained) == sorted(single.store.ids[single.train_indices].tolist())


@pytest.mark.parametrize("exponent", [0, 1, 2])
def test_generated_noise_has_its_spectral_slope_at_any_length(exponent):
    """White, pink and brown noise: power falls as 1/f^exponent, also at a prime length (shaped
    at a longer, fast FFT length and cut)."""
    n = 48017  # prime
    noise = coloured_noise(np.random.default_rng(exponent), n, exponent)
    assert noise.shape == (n,) and np.all(np.isfinite(noise))
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.arange(len(power))
    band = (freqs >= 100) & (freqs <= 20000)  # away from DC and the cut's edge effects
    slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)
