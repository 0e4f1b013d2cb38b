"""Input images: the forms a request may give them in, fetching them safely, and the image rules.

Used by the api before anything is queued and by the worker to decode stored images. Imports no
PyAV, torch, engines or api code.
"""

from clipforge.inputs.fetch import (
    CheckedUrl,
    ImageFetcher,
    check_public_url,
    check_public_url_async,
    is_public_address,
    load_image,
    parse_image_ref,
)
from clipforge.inputs.images import CheckedImage, check_image_bytes, decode_image

__all__ = [
    "CheckedImage",
    "CheckedUrl",
    "ImageFetcher",
    "check_image_bytes",
    "check_public_url",
    "check_public_url_async",
    "decode_image",
    "is_public_address",
    "load_image",
    "parse_image_ref",
]
