"""End to end with storage on S3: inputs and outputs in the bucket, poll answers a presigned URL."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import httpx
import numpy as np
from PIL import Image

from helpers import LiveServer, data_uri, gradient_image, psnr, wait_terminal
from storage.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server


def test_generation_with_storage_on_s3(tmp_path: Path, s3_server: S3Server):
    bucket = f"live-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket)
    env = {"CLIPFORGE_STORAGE_URL": f"s3://{bucket}/clipforge", "CLIPFORGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
           "CLIPFORGE_S3_REGION": REGION, "CLIPFORGE_S3_ACCESS_KEY_ID": ACCESS_KEY,
           "CLIPFORGE_S3_SECRET_ACCESS_KEY": SECRET_KEY, "CLIPFORGE_S3_ADDRESSING_STYLE": "path",
           "CLIPFORGE_RETENTION_HOURS": "2"}
    server = LiveServer(tmp_path, extra_env=env).start()
    try:
        c = httpx.Client(base_url=server.url, headers=server.headers(), timeout=30)
        image = gradient_image(480, 320)
        r = c.post("/v2/video/generations", json={"model": "test/fixed", "prompt": "s3", "duration": "5",
                                                   "image_url": data_uri(image)})
        assert r.status_code == 200, r.text
        body = wait_terminal(c, r.json()["id"], timeout=120)
        assert body["status"] == "completed", body

        keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert any(k.startswith("clipforge/inputs/") and k.endswith("/image.png") for k in keys), keys
        assert {k.rsplit("/", 1)[1] for k in keys} >= {"output.mp4", "thumbnail.jpg", "spritesheet.jpg"}
        assert not (tmp_path / "media").exists() or not any((tmp_path / "media").rglob("*.mp4"))

        url = body["video"]["url"]
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert url.startswith(f"{s3_server.endpoint_url}/{bucket}/clipforge/") and parts.path.endswith("/output.mp4")
        assert "X-Amz-Signature" in query
        assert 2 * 3600 - 120 <= int(query["X-Amz-Expires"][0]) <= 2 * 3600  # the retention left
        assert body["output"]["thumbnail_url"].startswith(s3_server.endpoint_url)

        video = httpx.get(url)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(video.content)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert (frames[0].shape[1], frames[0].shape[0]) == (480, 320) and len(frames) == 5 * 24
        first = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
        assert psnr(frames[0], first) > 28  # the fixed engine's first frame is the input image

        # A /media link (e.g. kept from before a move to S3) redirects to a signed URL.
        key = parts.path.split(f"/{bucket}/clipforge/", 1)[1]
        moved = httpx.get(f"{server.url}/media/{key}")
        assert moved.status_code == 307 and moved.headers["location"].startswith(s3_server.endpoint_url)
        assert httpx.get(moved.headers["location"]).content == video.content
        assert httpx.get(f"{server.url}/media/{key.rsplit('/', 1)[0]}/nothing.mp4").status_code == 404

        # Deleting the generation deletes its media from the bucket (presigned URL then finds nothing).
        assert c.delete(f"/v1/videos/{body['id']}").json()["deleted"] is True
        assert httpx.get(url).status_code == 404
        assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # inputs went too
    finally:
        server.stop()
