"""Generic image data tools: folders of images to NCHW arrays, crops, flips, block means.

JPEGs decode as HWC uint8; this package converts them, once, to NCHW float32
in [0, 1]. Everything it returns for training is NCHW. The loaders of the real
datasets numcnn is taught with live in :mod:`numcnn.datasets`.

- :mod:`numcnn.data.images`: read one image, list and load a ``root/CLASS/*.jpeg`` tree;
- :mod:`numcnn.data.decode`: one image (or many) through the loaders' steps;
- :mod:`numcnn.data.cache`: decoded images cached, keyed on the files' bytes;
- :mod:`numcnn.data.transforms`: crops of one image, block means, [0, 1], the mean image;
- :mod:`numcnn.data.augment`: random crops, flips, quarter turns, colour jitter, symmetries;
- :mod:`numcnn.data.stain`: stain (optical density), scale and light augmentation;
- :mod:`numcnn.data.acquisition`: camera augmentation (blur, sensor noise, JPEG).
"""

from .acquisition import camera_jitter, jpeg_round_trip, random_blur, random_jpeg, random_noise
from .augment import (SYMMETRY_COUNT, centre_crop, colour_jitter, crop_and_flip,
                      predict_symmetric, random_crop, random_flips, symmetries)
from .cache import CACHE_ENV_VAR, default_cache_dir
from .decode import decode_images, prepare_image, preprocess_image, warn_skipped
from .stain import (brightness_contrast, change_stains, lab_augment, random_rescale,
                    stain_jitter)
from .images import (IMAGE_EXTENSIONS, ImageError, ImageSet, SkippedImagesWarning,
                     find_class_folders, image_files_in, list_image_files, load_image_folder,
                     read_rgb_image, subsample_per_class)
from .transforms import (CentreCrop, MeanImage, block_sums, crop_around, downscale,
                         to_unit_range)

__all__ = [
    # images and folders
    "IMAGE_EXTENSIONS", "ImageError", "ImageSet", "SkippedImagesWarning",
    "read_rgb_image", "find_class_folders", "image_files_in", "list_image_files",
    "subsample_per_class", "load_image_folder",
    # decoding and its cache
    "prepare_image", "preprocess_image", "decode_images", "warn_skipped",
    "CACHE_ENV_VAR", "default_cache_dir",
    # preprocessing
    "downscale", "block_sums", "to_unit_range", "MeanImage", "crop_around", "CentreCrop",
    # augmentation and test-time views
    "random_flips", "colour_jitter", "symmetries", "SYMMETRY_COUNT",
    "random_crop", "centre_crop", "crop_and_flip", "predict_symmetric",
    "stain_jitter", "change_stains", "random_rescale", "brightness_contrast", "lab_augment",
    "random_blur", "random_noise", "jpeg_round_trip", "random_jpeg", "camera_jitter",
]
