"""Which artifact keys `/media` may serve: a media token and an output file name, exactly."""

from __future__ import annotations

import pytest

from clipforge.core.job import OUTPUT_FILES, is_output_key, new_media_token
from clipforge.worker.runner import MediaKeys

TOKEN = "vSDBv4HDHg7_hItN_6fqRvYY8D5Bmosa"  # new_media_token()'s shape; fixed so every collection names the same tests


def test_every_output_the_worker_stores_is_servable():
    keys = MediaKeys.for_token(TOKEN)
    assert [keys.video, keys.thumbnail, keys.spritesheet] == [f"{TOKEN}/{name}" for name in OUTPUT_FILES]
    assert all(is_output_key(k) for k in (keys.video, keys.thumbnail, keys.spritesheet))


@pytest.mark.parametrize("key", [
    "inputs/abc/image.png", f"./{TOKEN}/output.mp4", f"{TOKEN}/./output.mp4", f"{TOKEN}/../{TOKEN}/output.mp4",
    f"/{TOKEN}/output.mp4", f"{TOKEN}//output.mp4", f"{TOKEN}/output.mp4\x00", f"{TOKEN}/output.mp4/",
    f"{TOKEN}/image.png", f"{TOKEN[:-1]}/output.mp4", f"{TOKEN}x/output.mp4", f"{TOKEN}/output.mp4\n",
    "a" * 5000, "", "/etc/passwd", f"{TOKEN}%2Foutput.mp4", f"{TOKEN}\\output.mp4",
])
def test_everything_else_is_refused(key: str):
    assert not is_output_key(key)


def test_the_fixed_token_has_the_shape_of_a_real_one():
    real = new_media_token()
    assert len(real) == len(TOKEN) and is_output_key(f"{real}/output.mp4") and is_output_key(f"{TOKEN}/output.mp4")
