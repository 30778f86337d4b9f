"""Helpers with no stage of their own (disk images, ...); they import only scooby.core."""
