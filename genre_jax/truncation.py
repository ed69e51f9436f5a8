"""Whether an Ogg or MP3 file was cut short, from its container, after it has been decoded.

Truncated Ogg and MP3 files decode without error to the audio before the cut, so the decoders
cannot tell; the containers can (:func:`truncation_warning`). A cut is a warning, not an error:
the audio before it is still a song. WAV and AU truncation is an error of decoding instead
(:func:`genre_jax.audio.load_audio`, which checks their headers' declared lengths).
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header, full segment table, 255 segments of 255 bytes
_OGG_EOS = 0x04
_MP3_SCAN_BYTES = 65536  # bytes after an ID3v2 tag searched for the first MPEG frame
_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def _ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, MSB first, no initial or final
    XOR) of ``page`` with its checksum field zeroed.

    zlib computes the bit-reflected CRC-32 with an initial and final XOR of ``0xFFFFFFFF``;
    on bit-reversed bytes, with both XORs undone, it is the bit reversal of Ogg's.
    """
    page = page[:22] + b"\0\0\0\0" + page[26:]
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _ogg_page_length(data: bytes, start: int) -> int | None:
    """The length of the Ogg page starting at ``start``; None if ``data`` ends before its
    header and segment table tell it."""
    if start + 27 > len(data):
        return None
    count = data[start + 26]
    if start + 27 + count > len(data):
        return None
    return 27 + count + sum(data[start + 27 : start + 27 + count])


def _ogg_warning(handle: BinaryIO, size: int, decoded_seconds: float) -> str | None:
    """The cut an Ogg file's tail shows: its last page incomplete, or not end-of-stream.

    The last two maximal pages of the file are read. The pages are followed from the first one
    there whose checksum is right (a capture pattern ``OggS`` inside packet data fails it) to
    the end of the file; None when no chain of pages reaches the end (trailing junk).
    """
    start = max(0, size - 2 * _OGG_MAX_PAGE)
    handle.seek(start)
    tail = handle.read()
    candidate = tail.find(b"OggS")
    while candidate >= 0:
        length = _ogg_page_length(tail, candidate)
        if (
            length is not None
            and candidate + length <= len(tail)
            and tail[candidate + 4] == 0
            and _ogg_crc(tail[candidate : candidate + length])
            == struct.unpack_from("<I", tail, candidate + 22)[0]
        ):
            break
        candidate = tail.find(b"OggS", candidate + 1)
    else:
        return None
    page = candidate
    while True:
        length = _ogg_page_length(tail, page)
        if length is None or page + length > len(tail):
            whole = f"of {length} bytes " if length is not None else ""
            return (
                f"truncated: the last Ogg page is cut off ({len(tail) - page} bytes {whole}"
                f"present); {decoded_seconds:.2f} s decoded"
            )
        if page + length == len(tail):
            if tail[page + 5] & _OGG_EOS:
                return None
            return (
                "truncated: the Ogg stream ends without its end-of-stream page; "
                f"{decoded_seconds:.2f} s decoded"
            )
        page += length
        if tail[page : page + 4] != b"OggS":
            return None


def _mp3_frame(data: bytes, at: int) -> tuple[int, int, int, int] | None:
    """``(rate, samples per frame, side-information bytes, CRC bytes)`` of the MPEG layer III
    frame header at ``at``, or None if there is none."""
    if at + 4 > len(data) or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version = (data[at + 1] >> 3) & 3  # 0: MPEG 2.5, 1: reserved, 2: MPEG 2, 3: MPEG 1
    layer = (data[at + 1] >> 1) & 3  # 1: layer III
    bitrate, rate_index = data[at + 2] >> 4, (data[at + 2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate_index == 3:
        return None
    rate = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    mono = data[at + 3] >> 6 == 3
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    crc = 0 if data[at + 1] & 1 else 2
    return rate[version][rate_index], 1152 if version == 3 else 576, side, crc


def _mp3_declared(data: bytes, at: int) -> tuple[int | None, int | None, str] | None:
    """``(frames, bytes, tag name)`` a Xing/Info or VBRI header in the frame at ``at``
    declares, or None if the frame has neither."""
    frame = _mp3_frame(data, at)
    if frame is None:
        return None
    _, _, side, crc = frame
    for offset in (at + 4 + side, at + 4 + side + crc):
        tag = data[offset : offset + 4]
        if tag in (b"Xing", b"Info") and offset + 8 <= len(data):
            (flags,) = struct.unpack_from(">I", data, offset + 4)
            fields, frames, count = offset + 8, None, None
            if flags & 1 and fields + 4 <= len(data):
                (frames,) = struct.unpack_from(">I", data, fields)
                fields += 4
            if flags & 2 and fields + 4 <= len(data):
                (count,) = struct.unpack_from(">I", data, fields)
            return frames, count, tag.decode()
    offset = at + 36
    if data[offset : offset + 4] == b"VBRI" and offset + 18 <= len(data):
        count, frames = struct.unpack_from(">II", data, offset + 10)
        return frames, count, "VBRI"
    return None


def _mp3_warning(handle: BinaryIO, size: int, decoded_seconds: float) -> str | None:
    """The cut an MP3's Xing/Info or VBRI header shows: fewer bytes in the file, or fewer
    seconds decoded, than it declares (None without such a header).

    The first frame is the one at the start of the file or, after an ID3v2 tag, the first
    frame header within :data:`_MP3_SCAN_BYTES`. The stream's bytes run from that frame to the
    end of the file, less a trailing 128-byte ID3v1 tag. Up to four frames of decoded length
    may go missing without a warning (the encoder's delay and padding a gapless decoder drops).
    """
    handle.seek(0)
    head = handle.read(10)
    first = 0
    if len(head) == 10 and head[:3] == b"ID3":
        tag = 0
        for byte in head[6:10]:
            tag = (tag << 7) | (byte & 0x7F)
        first = 10 + tag + (10 if head[5] & 0x10 else 0)
    handle.seek(first)
    data = handle.read(_MP3_SCAN_BYTES)
    at = 0
    if first:
        at = data.find(b"\xff")
        while at >= 0 and _mp3_frame(data, at) is None:
            at = data.find(b"\xff", at + 1)
        if at < 0:
            return None
    frame = _mp3_frame(data, at)
    declared = _mp3_declared(data, at)
    if frame is None or declared is None:
        return None
    rate, samples_per_frame, _, _ = frame
    frames, count, tag = declared
    id3v1 = 0
    if size - first - at >= 128:
        handle.seek(size - 128)
        id3v1 = 128 if handle.read(3) == b"TAG" else 0
    held = size - first - at - id3v1
    declares, found = [], []
    if count and held < count:
        declares.append(f"{count} bytes")
        found.append(f"the file holds {held} bytes")
    if frames:
        seconds = frames * samples_per_frame / rate
        if decoded_seconds < seconds - 4 * samples_per_frame / rate:
            declares.append(f"{seconds:.2f} s")
            found.append(f"{decoded_seconds:.2f} s decoded")
    if not declares:
        return None
    return f"truncated: its MP3 {tag} header declares {' and '.join(declares)}; {', '.join(found)}"


def truncation_warning(path: str | os.PathLike, decoded_seconds: float) -> str | None:
    """A warning when the file's container shows it was cut, else None.

    Truncated Ogg and MP3 files decode without error to the audio before the cut, so the
    decoders cannot tell; the containers can. For Ogg (Vorbis, Opus), the file's tail: its last
    page incomplete, or without the end-of-stream flag. For MP3, a Xing/Info or VBRI header in
    the first frame that declares more stream bytes than the file holds, or more frames than
    ``decoded_seconds`` (the length decoded, at any rate) covers. Other formats, and MP3 files
    without such a header, declare nothing here: None. WAV and AU truncation is an error of
    :func:`load_audio` instead.

    Reads at most the last 128 KB of an Ogg file, the first 64 KB after an MP3's ID3v2 tag
    and its last 128 bytes. A file that cannot be read, or is no regular file, gives None
    (decoding it reports why).
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None  # a FIFO would block the open
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if handle.read(4) == b"OggS":
                return _ogg_warning(handle, size, decoded_seconds)
            return _mp3_warning(handle, size, decoded_seconds)
    except OSError:
        return None
