"""Media with PyAV (FFmpeg's libraries): MP4 encode, probe, decode, thumbnails, spritesheets."""
