"""Figures: valid PNGs of the expected size, titles and labelled axes, the numbers they draw."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from genre_jax.audio import AudioError
from genre_jax.audio_plots import mel_db, plot_file, waveform_and_mel, waveform_and_mel_figure
from genre_jax.plots import (
    confusion_matrix,
    confusion_matrix_figure,
    normalize_rows,
    training_curves,
    training_curves_figure,
)
from genre_jax.synthetic import GENRES, synthesize_clip

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def only_file_in(folder: Path) -> Path:
    """The single file of ``folder``: an atomic write leaves no temporary file behind."""
    files = list(folder.iterdir())
    assert len(files) == 1, files
    return files[0]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthesize_clip("jazz", 0, seconds=12.0)


def counts_matrix() -> np.ndarray:
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, size=(10, 10))
    matrix[3] = 0  # a genre with no test examples
    return matrix


# --- waveform and mel spectrogram ----------------------------------------------------------------


def test_waveform_and_mel_writes_a_1200_by_700_png(clip: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "views.png"
    waveform_and_mel(clip, 22050, path, "A jazz clip")
    assert only_file_in(tmp_path) == path
    assert png_size(path) == (1200, 700)  # figsize 12 x 7 in at 100 dpi, not cropped


def test_waveform_and_mel_figure_is_titled_and_labelled(clip: np.ndarray) -> None:
    figure = waveform_and_mel_figure(clip, 22050, "A jazz clip")
    assert figure.get_suptitle() == "A jazz clip"
    wave_ax, _, mel_ax, colour_ax = figure.axes
    assert wave_ax.get_title() == "Waveform" and mel_ax.get_title().startswith("Mel spectrogram")
    assert wave_ax.get_xlabel() == mel_ax.get_xlabel() == "time (s)"
    assert wave_ax.get_ylabel() == "amplitude (full scale)"
    assert mel_ax.get_ylabel() == "mel frequency (Hz)"
    assert "dB" in colour_ax.get_ylabel()
    assert wave_ax.get_xlim() == mel_ax.get_xlim() == pytest.approx((0.0, 12.0))
    # the image is the dB mel spectrogram, frames along x and bands along y
    mesh = mel_ax.collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(128, -1).T, mel_db(clip, 22050))


@pytest.mark.parametrize(("n_fft", "hop"), [(2048, 512), (1000, 300)])
def test_chunked_mel_db_matches_librosa(n_fft: int, hop: int) -> None:
    y = synthesize_clip("rock", 1, seconds=4.0)
    ours = mel_db(y, 22050, n_fft=n_fft, hop_length=hop, chunk_frames=37)
    whole = mel_db(y, 22050, n_fft=n_fft, hop_length=hop, chunk_frames=10_000)
    reference = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=y.astype(np.float64), sr=22050, n_fft=n_fft, hop_length=hop, n_mels=128
        ),
        top_db=80.0,
    ).T
    assert ours.shape == reference.shape == (1 + y.shape[0] // hop, 128)
    np.testing.assert_allclose(ours, whole, atol=1e-4)
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_long_signal_is_drawn_as_envelope_and_pooled_frames() -> None:
    y = np.random.default_rng(0).uniform(-0.5, 0.5, 22050 * 60).astype(np.float32)
    figure = waveform_and_mel_figure(y, 22050, "One minute of noise")
    wave_ax, _, mel_ax, _ = figure.axes
    assert not wave_ax.lines and wave_ax.collections  # min/max envelope, not 1.3 M points
    columns = np.asarray(mel_ax.collections[0].get_array()).size // 128
    assert 1000 <= columns <= 2000  # 2,584 frames max-pooled in pairs for display
    assert wave_ax.get_xlim() == pytest.approx((0.0, 60.0))


def test_plot_file_decodes_any_format_and_limits_seconds(tmp_path: Path) -> None:
    audio = tmp_path / "in" / "clip.flac"
    audio.parent.mkdir()
    mono = synthesize_clip("blues", 0, seconds=12.0, sample_rate=44100)
    sf.write(audio, np.stack([mono, 0.5 * mono], axis=1), 44100)
    out = plot_file(audio, tmp_path / "out" / "clip.png", seconds=5.0)
    assert out == tmp_path / "out" / "clip.png" and only_file_in(out.parent) == out
    assert png_size(out) == (1200, 700)
    text = tmp_path / "in" / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(AudioError, match=r"notes\.wav"):
        plot_file(text, tmp_path / "out" / "notes.png")
    with pytest.raises(ValueError, match="seconds"):
        plot_file(audio, tmp_path / "out" / "x.png", seconds=0)


def test_plot_never_replaces_its_input_and_replaces_a_png_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Issue 35, item 12: ``plot FILE --out FILE`` replaced the audio with a PNG, ``--out
    notes.txt`` replaced any file, and the default ``./<stem>.png`` was replaced silently."""
    from genre_jax.cli import main

    monkeypatch.chdir(tmp_path)
    audio = tmp_path / "song.wav"
    sf.write(audio, synthesize_clip("jazz", 0, seconds=2.0), 22050, subtype="PCM_16")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (tmp_path / "hard.png").hardlink_to(audio)
    (tmp_path / "link.png").symlink_to("song.wav")
    before = audio.read_bytes()

    def plot(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        status = main(["plot", "song.wav", "--seconds", "1", *argv])
        return status, capsys.readouterr().err

    for out in (
        "song.wav",
        str(audio),
        "hard.png",
        "link.png",
        f"../{tmp_path.name}/song.wav",
    ):
        status, err = plot("--out", out, "--overwrite")
        assert status == 2 and err.count("\n") == 1, (out, err)
        assert f"out={out}: is the audio file song.wav itself" in err
    status, err = plot("--out", "notes.txt", "--overwrite")
    assert status == 2 and "out=notes.txt: must end in .png" in err
    assert audio.read_bytes() == before and notes.read_text() == "mine\n"
    assert (tmp_path / "link.png").is_symlink() and (tmp_path / "hard.png").stat().st_nlink == 2

    assert plot() == (0, "")  # the default name, song.png here
    first = (tmp_path / "song.png").read_bytes()
    assert first[:8] == PNG_SIGNATURE
    status, err = plot()
    assert status == 2 and "out=song.png: exists; pass --overwrite to replace it" in err
    (tmp_path / "song.png").write_bytes(b"an older figure")
    assert plot("--overwrite") == (0, "")
    assert (tmp_path / "song.png").read_bytes() == first
    assert plot("--out", "upper.PNG") == (0, "")  # the suffix in any case
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        plot_file(audio, tmp_path / "song.png")  # the library refuses the same way


# --- confusion matrix ----------------------------------------------------------------------------


def test_normalize_rows_sums_to_one_and_keeps_empty_rows_zero() -> None:
    matrix = counts_matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero warning for the empty row
        fractions = normalize_rows(matrix)
    support = matrix.sum(axis=1)
    np.testing.assert_allclose(fractions.sum(axis=1)[support > 0], 1.0, atol=1e-12)
    assert (fractions[support == 0] == 0).all()
    expected = matrix[support > 0] / support[support > 0, None].astype(np.float64)
    np.testing.assert_allclose(fractions[support > 0], expected, rtol=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_writes_an_800_by_700_png(tmp_path: Path, normalize: bool) -> None:
    path = tmp_path / "confusion.png"
    confusion_matrix(counts_matrix(), GENRES, path, "Test set", normalize=normalize)
    assert only_file_in(tmp_path) == path
    assert png_size(path) == (800, 700)  # figsize 8 x 7 in at 100 dpi, not cropped


def test_confusion_counts_figure_shows_integers_and_genre_names() -> None:
    matrix = counts_matrix()
    figure = confusion_matrix_figure(matrix, GENRES, "Test set (segments)", unit="segments")
    ax, colour_ax = figure.axes
    assert ax.get_title() == "Test set (segments)"
    assert ax.get_xlabel() == "predicted genre" and ax.get_ylabel() == "true genre"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(GENRES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(GENRES)
    cells = [t.get_text() for t in ax.texts]
    assert cells == [str(v) for v in matrix.ravel()]  # row by row: true genre i, predicted j
    assert colour_ax.get_ylabel() == "segments (count)"


def test_confusion_normalized_figure_shows_fractions_on_a_0_1_scale() -> None:
    matrix = counts_matrix()
    figure = confusion_matrix_figure(matrix, GENRES, "Test set", normalize=True)
    ax = figure.axes[0]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    np.testing.assert_allclose(ax.images[0].get_array(), normalize_rows(matrix))
    cells = np.array([float(t.get_text()) for t in ax.texts]).reshape(10, 10)
    np.testing.assert_allclose(cells, normalize_rows(matrix), atol=0.005)
    assert (cells[3] == 0).all()


def test_confusion_matrix_rejects_a_mismatched_or_fractional_matrix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected \\(10, 10\\)"):
        confusion_matrix(np.zeros((9, 9)), GENRES, tmp_path / "x.png", "x")
    with pytest.raises(ValueError, match="whole numbers"):
        confusion_matrix(np.full((10, 10), 0.5), GENRES, tmp_path / "x.png", "x")
    assert not list(tmp_path.iterdir())


# --- training curves (unchanged behaviour) --------------------------------------------------------


def test_training_curves_writes_a_titled_1100_by_400_png(tmp_path: Path) -> None:
    history = [
        {
            "epoch": e,
            "accuracy": 0.1 * e,
            "val_accuracy": 0.08 * e,
            "loss": 2 / e,
            "val_loss": 2.2 / e,
        }
        for e in range(1, 6)
    ]
    figure = training_curves_figure(history, title="CNN training")
    acc_ax, loss_ax = figure.axes
    assert figure.get_suptitle() == "CNN training"
    assert acc_ax.get_ylabel() == "accuracy (%)" and "nats" in loss_ax.get_ylabel()
    assert acc_ax.get_xlabel() == loss_ax.get_xlabel() == "epoch"
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [8.0 * e for e in range(1, 6)])
    path = tmp_path / "curves.png"
    training_curves(history, path, title="CNN training")
    assert only_file_in(tmp_path) == path
    assert png_size(path) == (1100, 400)  # figsize 11 x 4 in at 100 dpi
