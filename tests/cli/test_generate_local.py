"""`clipforge generate` without --server: in-process, straight to an MP4."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from clipforge.cli import main
from clipforge.media.probe import decode_frames, probe
from helpers import gradient_image, psnr


def test_image_to_video_with_tail_and_no_audio(tmp_path: Path):
    first, last = tmp_path / "first.png", tmp_path / "last.png"
    first.write_bytes(gradient_image(480, 320, seed=1))
    last.write_bytes(gradient_image(480, 320, seed=2))
    out = tmp_path / "clip.mp4"
    result = CliRunner().invoke(main, ["generate", "--prompt", "slow push in", "--image", str(first),
                                       "--tail-image", str(last), "--no-audio", "--seed", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (480x320, 5.0 s, no audio)" in result.output
    info = probe(out)
    assert info.audio is None and info.video.frames == 120 and (info.video.width, info.video.height) == (480, 320)
    head, tail = decode_frames(out, [0, 119])
    assert psnr(head, np.asarray(Image.open(io.BytesIO(first.read_bytes())).convert("RGB"))) >= 35
    assert psnr(tail, np.asarray(Image.open(io.BytesIO(last.read_bytes())).convert("RGB"))) >= 35


def test_text_to_video_square_with_audio(tmp_path: Path):
    out = tmp_path / "t2v.mp4"
    result = CliRunner().invoke(main, ["generate", "--prompt", "green forest, birds", "--aspect-ratio", "1:1",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    info = probe(out)
    assert (info.video.width, info.video.height) == (1080, 1080) and info.audio.channels == 2


def test_bad_inputs_are_one_error_line(tmp_path: Path):
    small = tmp_path / "small.png"
    Image.new("RGB", (200, 180)).save(small)
    cases = [
        (["--image", str(small)], "Error: --image: image is 200x180 px"),
        (["--image", str(tmp_path / "missing.png")], "Error: --image: no such file"),
        (["--tail-image", str(small)], "Error: --tail-image: needs --image as well"),
        (["--duration", "7"], "Error: Invalid value for '--duration'"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["generate", "--prompt", "x", "-o", str(tmp_path / "o.mp4"), *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output
