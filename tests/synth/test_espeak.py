"""Tests for gru_jax.synth.espeak with a stand-in for the subprocess (no espeak-ng needed)."""

from __future__ import annotations

import io
import subprocess
from typing import Any

import numpy as np
import pytest
import soundfile

from gru_jax.synth import espeak

VARIANT_LISTING = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/M      Adam               !v/adam
 5  variant         --/F      Alicia             !v/Alicia
 5  variant         --/M      Mr_Serious         !v/Mr serious
 5  variant         --/-      Unknown            !v/odd
"""
LANGUAGE_LISTING = """\
Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
"""


class FakeRun:
    """Records each subprocess.run call and answers with `stdout`."""

    def __init__(self, stdout: bytes = b"", returncode: int = 0, stderr: bytes = b"") -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.stdout, self.returncode, self.stderr = stdout, returncode, stderr

    def __call__(self, cmd: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


@pytest.fixture
def fake_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(espeak, "executable", lambda: "/opt/bin/espeak-ng")


def _wav_bytes(n: int, rate: int = espeak.SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.full(n, 0.25, np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_synthesize_runs_an_argument_list_with_the_text_after_double_dash(
    fake_binary: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = FakeRun(_wav_bytes(500))
    monkeypatch.setattr(subprocess, "run", run)
    text = "-v evil; rm -rf / $(id)"
    samples = espeak.synthesize(text, "en-us", "Mr serious", 47, 181)
    assert samples.dtype == np.float32 and samples.shape == (500,)
    [(cmd, kwargs)] = run.calls
    assert isinstance(cmd, list) and not kwargs.get("shell", False)
    assert cmd == [
        "/opt/bin/espeak-ng",
        *("-v", "en-us+Mr serious", "-p", "47", "-s", "181", "--stdout", "--", text),
    ]
    assert kwargs["timeout"] == espeak.TIMEOUT_S


def test_synthesize_checks_ranges_and_output(
    fake_binary: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="pitch"):
        espeak.synthesize("a", "en-us", "m1", 100, 175)
    with pytest.raises(ValueError, match="speed"):
        espeak.synthesize("a", "en-us", "m1", 50, 20)
    monkeypatch.setattr(subprocess, "run", FakeRun(_wav_bytes(10, rate=16000)))
    with pytest.raises(espeak.EspeakError, match="unexpected output"):
        espeak.synthesize("a", "en-us", "m1", 50, 175)


def test_failures_name_the_command_not_the_text(
    fake_binary: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", FakeRun(returncode=1, stderr=b"voice does not exist"))
    with pytest.raises(espeak.EspeakError) as error:
        espeak.synthesize("secret words", "xx", "m1", 50, 175)
    message = str(error.value)
    assert "espeak-ng -v xx+m1" in message and "voice does not exist" in message
    assert "secret words" not in message

    def timeout(cmd: Any, **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", timeout)
    with pytest.raises(espeak.EspeakError, match="espeak-ng --version did not finish"):
        espeak.version()


def test_missing_binary_names_it_and_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(espeak.EspeakError, match=r"espeak-ng not found on PATH.*apt-get install"):
        espeak.version()


def test_listings_parse(fake_binary: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", FakeRun(VARIANT_LISTING.encode()))
    assert espeak.installed_variants() == {
        "adam": "male",
        "Alicia": "female",
        "Mr serious": "male",
        "odd": "male",
    }
    monkeypatch.setattr(subprocess, "run", FakeRun(LANGUAGE_LISTING.encode()))
    assert espeak.installed_languages() == {"af", "en-us"}
    version_text = b"eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/espeak-ng-data\n"
    monkeypatch.setattr(subprocess, "run", FakeRun(version_text))
    assert espeak.version() == "1.51"


def test_check_voices_names_what_is_missing_or_regendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(espeak, "installed_languages", lambda: {"af", "en-us"})
    monkeypatch.setattr(espeak, "installed_variants", lambda: {"m1": "male", "f1": "male"})
    monkeypatch.setattr(espeak, "version", lambda: "1.51")
    espeak.check_voices(["af"], ["m1"])
    with pytest.raises(espeak.EspeakError) as error:
        espeak.check_voices(["af", "de"], ["m1", "f1", "steph"])
    message = str(error.value)
    assert "language 'de'" in message and "variant 'f1'" in message
    assert "variant 'steph'" in message and "'m1'" not in message
