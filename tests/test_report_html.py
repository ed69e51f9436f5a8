"""The HTML report page (genre_jax.report_html) and its audio excerpts (genre_jax.excerpts).

The page is parsed back with the standard library's HTML parser into a tree, so that the tests
read what a browser reads: the tags, their attributes unescaped, the text. The excerpts are
decoded back with soundfile and compared with the samples they were cut from. One test opens
the page in headless Chromium (tests/browser.py), which decodes an excerpt with its own audio
stack and follows a confusion cell's link.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from genre_jax.audio import AudioError, load_audio
from genre_jax.excerpts import (
    DEFAULT_SECONDS,
    FADE_SECONDS,
    excerpt_bounds,
    excerpt_data_uri,
    faded,
)
from genre_jax.report_html import render_page, write_page
from tests.browser import check_report_page
from tests.conftest import shared

RATE = 16_000
# An excerpt of DEFAULT_SECONDS of music at 16 kHz mono is about 17 KB of Ogg Vorbis; this
# bound keeps a report with a hundred excerpts under 3 MB.
MAX_EXCERPT_BYTES = 24_000
# The song of the synthetic tests: one tone per second, 300 Hz in the first, 400 in the second...
TONE_SECONDS, SONG_RATE = 10, 22_050


def tone_of_second(second: int) -> float:
    return 300.0 + 100.0 * second


# --- reading HTML and audio back ---------------------------------------------------------------


class Node:
    """An element of the parsed page: tag, attributes (unescaped), children (nodes, text)."""

    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def find_all(self, tag: str, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if n.tag == tag
            and (cls is None or cls in (n.attrs.get("class") or "").split())
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


class _TreeBuilder(HTMLParser):
    """Builds :class:`Node` trees and refuses a closing tag that does not close the element
    opened last (the page's markup must nest)."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "source", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(document: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(document)
    builder.close()
    assert builder.stack == [builder.root], [n.tag for n in builder.stack]
    return builder.root


def decode_uri(uri: str) -> tuple[np.ndarray, int, int]:
    """The samples, rate and encoded size of an excerpt's data URI."""
    head, payload = uri.split(",", 1)
    assert head == "data:audio/ogg;base64", head
    encoded = base64.b64decode(payload, validate=True)
    samples, rate = sf.read(io.BytesIO(encoded), dtype="float32")
    return samples, rate, len(encoded)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def dominant_frequency(samples: np.ndarray, rate: int, start: float, stop: float) -> float:
    window = samples[round(start * rate) : round(stop * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.fft.rfftfreq(len(window), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def stepped_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s WAV at 22050 Hz: second k is a tone of :func:`tone_of_second` (k)."""
    t = np.arange(SONG_RATE) / SONG_RATE
    audio = np.concatenate(
        [0.5 * np.sin(2 * np.pi * tone_of_second(k) * t) for k in range(TONE_SECONDS)]
    )
    path = tmp_path_factory.mktemp("songs") / "stepped.wav"
    sf.write(path, audio.astype(np.float32), SONG_RATE, subtype="PCM_16")
    return path


# --- excerpts -----------------------------------------------------------------------------------


def test_excerpt_of_real_music_is_its_middle_and_small() -> None:
    path = shared("other/vibe_ace_44k_stereo.ogg")
    samples, rate, size = decode_uri(excerpt_data_uri(path))
    assert rate == RATE and samples.ndim == 1
    assert abs(len(samples) - DEFAULT_SECONDS * RATE) <= 1
    assert size < MAX_EXCERPT_BYTES
    # lossy, but the same waveform: the middle 4 s of the song as every consumer decodes it
    song = load_audio(path, RATE)
    middle = song[excerpt_bounds(len(song), RATE, DEFAULT_SECONDS, None)]
    inner = slice(800, -800)  # leave out the fades
    assert np.corrcoef(samples[inner], middle[inner])[0, 1] > 0.9
    assert abs(np.corrcoef(samples[inner], song[: len(samples)][inner])[0, 1]) < 0.5


def test_excerpt_is_centred_unless_told_where(stepped_song: Path) -> None:
    samples, rate, size = decode_uri(excerpt_data_uri(stepped_song))
    assert rate == RATE and abs(len(samples) - 4 * RATE) <= 1 and size < MAX_EXCERPT_BYTES
    # 4 s around the middle of 10 s: seconds 3 to 7
    assert dominant_frequency(samples, rate, 0.1, 0.9) == pytest.approx(tone_of_second(3), abs=5)
    assert dominant_frequency(samples, rate, 3.1, 3.9) == pytest.approx(tone_of_second(6), abs=5)

    samples, rate, _ = decode_uri(excerpt_data_uri(stepped_song, seconds=2.0, start=1.0))
    assert abs(len(samples) - 2 * RATE) <= 1
    assert dominant_frequency(samples, rate, 0.1, 0.9) == pytest.approx(tone_of_second(1), abs=5)
    # a start too late for the length is moved back: the last 3 s
    samples, rate, _ = decode_uri(excerpt_data_uri(stepped_song, seconds=3.0, start=9.0))
    assert abs(len(samples) - 3 * RATE) <= 1
    assert dominant_frequency(samples, rate, 0.1, 0.9) == pytest.approx(tone_of_second(7), abs=5)


def test_song_shorter_than_the_excerpt_is_taken_whole(tmp_path: Path) -> None:
    t = np.arange(round(2.5 * SONG_RATE)) / SONG_RATE
    path = tmp_path / "short.wav"
    sf.write(path, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SONG_RATE)
    for start in (None, 1.0):
        samples, rate, _ = decode_uri(excerpt_data_uri(path, seconds=4.0, start=start))
        assert rate == RATE and abs(len(samples) - 2.5 * RATE) <= 1


def test_excerpt_fades_in_and_out(stepped_song: Path) -> None:
    ones = faded(np.ones(RATE, dtype=np.float32), RATE)
    fade = round(FADE_SECONDS * RATE)
    np.testing.assert_allclose(ones[:fade], np.arange(fade) / fade, atol=1e-6)
    np.testing.assert_allclose(ones[-fade:], (np.arange(fade) / fade)[::-1], atol=1e-6)
    assert np.all(ones[fade:-fade] == 1.0)
    # and once encoded: the first and last 5 ms are far quieter than the rest
    samples, _, _ = decode_uri(excerpt_data_uri(stepped_song))
    edge = round(0.005 * RATE)
    middle = rms(samples[edge * 10 : -edge * 10])
    assert rms(samples[:edge]) < 0.35 * middle and rms(samples[-edge:]) < 0.35 * middle


def test_excerpt_of_a_file_that_is_not_audio_raises_audio_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n" * 20)
    for path in (text, tmp_path / "missing.ogg"):
        with pytest.raises(AudioError) as caught:
            excerpt_data_uri(path)
        assert str(path) in str(caught.value)


def test_excerpt_refuses_an_empty_length_or_a_negative_start(stepped_song: Path) -> None:
    with pytest.raises(ValueError, match="seconds"):
        excerpt_data_uri(stepped_song, seconds=0.0)
    with pytest.raises(ValueError, match="start"):
        excerpt_data_uri(stepped_song, start=-1.0)


# --- the page -----------------------------------------------------------------------------------

GENRES = ["blues", "classical", 'r&b "soul"']
SCRIPT_NAME = "<script>alert('x')</script> & co"
# song ids with slashes, spaces, colons, and two whose slugs are the same
SONG_IDS = {
    "b1": "blues/3f2a01",
    "b2": "seed 1:blues/abc",
    "b3": "blues/3F2A01",
    "c1": "classical/9f",
    "c2": "classical/9f ",
    "r1": 'r&b "soul"/x y',
    "r2": "r&b/<évasion>",
}
SONG_MATRIX = [[1, 2, 0], [0, 1, 1], [0, 1, 1]]
SONG_CELLS = {
    "0,0": ["blues/3f2a01"],
    "0,1": ["seed 1:blues/abc", "blues/3F2A01"],
    "1,1": ["classical/9f"],
    "1,2": ["classical/9f "],
    "2,1": ['r&b "soul"/x y'],
    "2,2": ["r&b/<évasion>"],
}
ERRORS = ["seed 1:blues/abc", "blues/3F2A01", "classical/9f ", 'r&b "soul"/x y']


def _verdict(true: int, predicted: int) -> dict[str, Any]:
    probabilities = [0.1, 0.1, 0.1]
    probabilities[predicted] = 0.8
    return {
        "model": "cnn",
        "predicted": GENRES[predicted],
        "correct": true == predicted,
        "probabilities": probabilities,
    }


def build_page(audio: str) -> dict[str, Any]:
    """A page with every part: two matrices (songs, segments), an error list whose first song
    has ``audio`` and second a note, a map, and hostile text in names and genres."""
    cells = {tuple(map(int, k.split(","))): v for k, v in SONG_CELLS.items()}
    songs = {}
    for (i, j), ids in cells.items():
        for song in ids:
            songs[song] = {
                "name": SCRIPT_NAME if song == "seed 1:blues/abc" else f"song {song}",
                "genre": GENRES[i],
                "audio": None,
                "audio_note": "audio unavailable: no such file" if song in ERRORS else None,
                "verdicts": [_verdict(i, j)],
            }
    songs[ERRORS[0]]["audio"] = audio
    points = [
        {"x": float(n), "y": float(n % 3), "genre": s["genre"], "error": sid in ERRORS, "song": sid}
        for n, (sid, s) in enumerate(songs.items())
    ]
    return {
        "title": "Evaluation of <b>cnn</b> on gtzan-dev",
        "kind": "evaluate",
        "ran": ["Restored run cnn-1 from its checkpoint.", "Data: ../shared/data <here>."],
        "tables": [
            {
                "id": "summary",
                "title": "Summary",
                "columns": ["model", "song accuracy", "segments"],
                "rows": [["cnn", 0.5714285, 21], ["svm", None, 21]],
                "note": "Accuracy over 7 songs.",
            }
        ],
        "genres": GENRES,
        "confusions": [
            {"id": "songs", "title": "Songs", "counts": SONG_MATRIX, "cells": SONG_CELLS},
            {
                "id": "segments",
                "title": "Segments",
                "counts": [[3, 5, 1], [0, 4, 2], [0, 2, 4]],
                "cells": {"0,1": ["seed 1:blues/abc"] * 3 + ["blues/3F2A01"] * 2},
            },
        ],
        "songs": songs,
        "errors": {"title": "Songs to listen to", "songs": ERRORS, "note": "Wrong at song level."},
        "maps": [{"title": "Embeddings", "method": "PCA", "points": points}],
    }


@pytest.fixture(scope="module")
def page(stepped_song: Path) -> dict[str, Any]:
    return build_page(excerpt_data_uri(stepped_song))


@pytest.fixture(scope="module")
def document(page: dict[str, Any]) -> str:
    return render_page(page)


def _matrix(tree: Node, title: str) -> Node:
    (figure,) = [f for f in tree.find_all("figure") if f.find_all("h3")[0].text() == title]
    return figure


def test_page_is_self_contained(document: str) -> None:
    assert document.startswith("<!DOCTYPE html>")
    for needle in ("http://", "https://", 'src="/', "<link", "<script", "@import", "url("):
        assert needle not in document, needle
    tree = parse(document)
    sources = [n.attrs["src"] for n in tree.walk() if "src" in n.attrs]
    assert sources and all(s.startswith("data:audio/ogg;base64,") for s in sources)
    assert all(n.attrs["href"].startswith("#") for n in tree.walk() if "href" in n.attrs)


def test_user_text_is_escaped(document: str, page: dict[str, Any]) -> None:
    assert "<script>" not in document and "&lt;script&gt;" in document
    tree = parse(document)
    assert not tree.find_all("script")
    assert tree.find_all("title")[0].text() == page["title"]
    assert [h.text() for h in tree.find_all("h3") if "alert" in h.text()] == [SCRIPT_NAME]
    # a genre with a quote and an ampersand survives attributes and text
    cells = tree.find_all("td", data_true=GENRES[2], data_predicted=GENRES[2])
    assert len(cells) == 2  # one per matrix
    assert "Data: ../shared/data <here>." in [p.text() for p in tree.find_all("p")]


def test_confusion_cells_show_the_counts(document: str, page: dict[str, Any]) -> None:
    tree = parse(document)
    tables = tree.find_all("table", cls="confusion")
    assert len(tables) == len(page["confusions"])
    for table, matrix in zip(tables, page["confusions"], strict=True):
        shown = np.zeros((3, 3), dtype=int)
        for td in table.find_all("td"):
            if "data-count" not in td.attrs:
                continue
            i, j = GENRES.index(td.attrs["data-true"]), GENRES.index(td.attrs["data-predicted"])
            shown[i, j] = int(td.attrs["data-count"])
            assert td.text() == td.attrs["data-count"]
            assert bool(td.find_all("a")) == (shown[i, j] > 0)
        np.testing.assert_array_equal(shown, matrix["counts"])
    assert "Songs: 42.9 % (3 of 7)" in tree.find_all("p", cls="verdict")[0].text()


def test_every_link_lands_on_an_element_of_the_page(document: str) -> None:
    tree = parse(document)
    ids = [n.attrs["id"] for n in tree.walk() if "id" in n.attrs]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", i) for i in ids), ids
    hrefs = [n.attrs["href"][1:] for n in tree.walk() if n.tag == "a"]
    assert len(hrefs) > 20 and set(hrefs) <= set(ids)
    # every non-zero cell links to the list of its songs
    cell_links = [a.attrs["href"][1:] for a in tree.find_all("a") if a.attrs["href"][1:5] == "cell"]
    assert len(cell_links) == np.count_nonzero(SONG_MATRIX) + 7


def test_a_confusion_cell_lists_its_songs_linked_to_the_error_list(
    document: str, page: dict[str, Any]
) -> None:
    tree = parse(document)
    by_id = {n.attrs["id"]: n for n in tree.walk() if "id" in n.attrs}
    articles = {a.attrs["id"]: a for a in tree.find_all("article", cls="song")}
    songs = _matrix(tree, "Songs")
    (blues_as_classical,) = songs.find_all("td", data_true="blues", data_predicted="classical")
    listed = by_id[blues_as_classical.find_all("a")[0].attrs["href"][1:]]
    links = listed.find_all("a")
    assert [a.text() for a in links] == [SCRIPT_NAME, "song blues/3F2A01"]
    for link, song in zip(links, ["seed 1:blues/abc", "blues/3F2A01"], strict=True):
        article = articles[link.attrs["href"][1:]]
        assert article.find_all("h3")[0].text() == page["songs"][song]["name"]
    # a diagonal cell lists its (correct) songs by name, without links
    (blues_right,) = songs.find_all("td", data_true="blues", data_predicted="blues")
    listed = by_id[blues_right.find_all("a")[0].attrs["href"][1:]]
    assert not listed.find_all("a") and "song blues/3f2a01" in listed.text()
    # a segment matrix names each song once with its count
    segments = _matrix(tree, "Segments")
    (cell,) = segments.find_all("td", data_true="blues", data_predicted="classical")
    items = [li.text() for li in by_id[cell.find_all("a")[0].attrs["href"][1:]].find_all("li")]
    assert items == [f"{SCRIPT_NAME} ×3", "song blues/3F2A01 ×2"]


def test_error_list_shows_verdicts_probabilities_and_audio(
    document: str, page: dict[str, Any]
) -> None:
    tree = parse(document)
    (errors,) = tree.find_all("section", id="errors")
    articles = errors.find_all("article", cls="song")
    names = [a.find_all("h3")[0].text() for a in articles]
    assert names == [page["songs"][s]["name"] for s in ERRORS]
    first, second = articles[0], articles[1]
    (audio,) = first.find_all("audio")
    assert audio.attrs["src"] == page["songs"][ERRORS[0]]["audio"]
    assert "controls" in audio.attrs and audio.attrs["preload"] == "metadata"
    assert not second.find_all("audio")
    assert "audio unavailable: no such file" in second.text()
    # blues predicted classical: the true genre's bar green, the prediction's red, numbers shown
    (verdict,) = first.find_all("li", cls="wrong")
    assert "predicted classical" in verdict.text()
    (chart,) = verdict.find_all("svg")
    assert chart.find_all("title")[0].text() == 'blues 0.10, classical 0.80, r&b "soul" 0.10'
    fills = {r.find_all("title")[0].text(): r.attrs["fill"] for r in chart.find_all("rect")}
    assert fills["blues: 0.100"] == "#2ca02c" and fills["classical: 0.800"] == "#d62728"
    assert fills['r&b "soul": 0.100'] not in ("#2ca02c", "#d62728")
    assert not tree.find_all("li", cls="right")  # every listed song is wrong here


def test_map_draws_every_song_and_rings_the_errors(document: str, page: dict[str, Any]) -> None:
    tree = parse(document)
    (chart,) = tree.find_all("svg", cls="map")
    circles = chart.find_all("circle")
    assert len(circles) == len(page["maps"][0]["points"])
    rings = [c for c in circles if c.attrs["fill"] == "#fff"]
    assert sorted(c.find_all("title")[0].text() for c in rings) == sorted(
        f"{page['songs'][s]['name']} (true {page['songs'][s]['genre']}, misclassified)"
        for s in ERRORS
    )
    fills = {c.attrs["fill"] for c in circles if c.attrs["fill"] != "#fff"}
    assert len(fills) == 3  # one colour per genre
    labels = [t.text() for t in chart.find_all("text")]
    assert labels == ["PCA 1", "PCA 2"]
    # each ring links to its song's entry
    assert len([a for a in chart.find_all("a") if a.find_all("circle")]) == len(ERRORS)


def test_a_page_that_contradicts_itself_is_refused(page: dict[str, Any]) -> None:
    bad_matrix = {**page, "confusions": [{"id": "songs", "title": "x", "counts": [[1, 2]]}]}
    with pytest.raises(ValueError, match=r"'songs'.*3 x 3"):
        render_page(bad_matrix)
    remote = {**page, "songs": {**page["songs"]}}
    remote["songs"][ERRORS[0]] = {**page["songs"][ERRORS[0]], "audio": "https://x.org/a.ogg"}
    with pytest.raises(ValueError, match="data:audio"):
        render_page(remote)
    missing = {**page, "errors": {"title": "x", "songs": ["nowhere"]}}
    with pytest.raises(ValueError, match="'nowhere'"):
        render_page(missing)
    with pytest.raises(ValueError, match="kind"):
        render_page({**page, "kind": "train"})


def test_a_page_with_only_a_title_and_a_kind_renders() -> None:
    tree = parse(render_page({"title": "Nothing yet", "kind": "crossval"}))
    assert [h.text() for h in tree.find_all("h2")] == ["Misclassified songs"]
    assert "No misclassified songs." in tree.text()
    with pytest.raises(ValueError, match="title"):
        render_page({"kind": "crossval"})


def test_write_page_writes_the_rendered_page(tmp_path: Path, page: dict[str, Any]) -> None:
    out = tmp_path / "reports" / "report.html"
    write_page(out, page)
    assert out.read_text(encoding="utf-8") == render_page(page)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_report_page_in_chromium(tmp_path: Path, page: dict[str, Any]) -> None:
    path, screenshot = tmp_path / "report.html", tmp_path / "report.png"
    write_page(path, page)
    found = check_report_page(path, screenshot)
    expected = [
        (GENRES[i], GENRES[j], count)
        for matrix in page["confusions"]
        for i, row in enumerate(matrix["counts"])
        for j, count in enumerate(row)
        if count > 0
    ]
    assert found["cells"] == expected
    assert len(found["articles"]) == len(ERRORS) and found["audio"] == 1
    # Chromium's decoder (FFmpeg) may leave out up to one Vorbis block at an end (256 samples
    # at 16 kHz were seen) where libvorbis returns every frame
    assert found["decoded"]["duration"] == pytest.approx(DEFAULT_SECONDS, abs=0.05)
    assert "#cell-" in found["clicked"]
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
