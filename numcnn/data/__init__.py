"""Image folders -> NCHW float32 arrays: decoding, preprocessing, augmentation,
and the blood-cell dataset (locate, load, cache).

JPEGs decode as HWC uint8; this package converts them, once, to NCHW float32
in [0, 1]. Everything it returns for training is NCHW.
"""

from .augment import SYMMETRY_COUNT, colour_jitter, random_flips, symmetries
from .bloodcells import (CACHE_ENV_VAR, CLASSES, DATA_ENV_VAR, IMAGE_SHAPE, SPLITS,
                         OriginalLabels, class_count_table, count_per_class,
                         cell_groups, default_cache_dir, default_data_dirs, images_dir,
                         labels_csv_path, load_bloodcells, locate_bloodcells,
                         original_cell_counts, read_original_labels, split_dir)
from .groups import (group_near_duplicates, group_per_class, polar_spectra,
                     rotation_invariant_similarity)
from .images import (IMAGE_EXTENSIONS, ImageError, ImageSet, SkippedImagesWarning,
                     decode_images, find_class_folders, list_image_files,
                     load_image_folder, read_rgb_image, subsample_per_class)
from .recipe import (centre_crop, crop_and_flip, predict_symmetric, preprocess_image,
                     random_crop)
from .preprocess import (MeanImage, block_sums, crop_around, crop_to_stain, downscale,
                         find_stain_centre, stain_mask, to_unit_range)

__all__ = [
    # images
    "IMAGE_EXTENSIONS", "ImageError", "ImageSet", "SkippedImagesWarning",
    "read_rgb_image", "find_class_folders", "list_image_files", "subsample_per_class",
    "decode_images", "load_image_folder",
    # preprocessing
    "downscale", "block_sums", "to_unit_range", "MeanImage",
    "stain_mask", "find_stain_centre", "crop_around", "crop_to_stain",
    # augmentation and the training recipe's crops
    "random_flips", "colour_jitter", "symmetries", "SYMMETRY_COUNT",
    "random_crop", "centre_crop", "crop_and_flip", "predict_symmetric", "preprocess_image",
    # the blood-cell dataset
    "CLASSES", "SPLITS", "IMAGE_SHAPE", "DATA_ENV_VAR", "CACHE_ENV_VAR",
    "default_data_dirs", "locate_bloodcells", "images_dir", "split_dir", "labels_csv_path",
    "count_per_class", "class_count_table", "OriginalLabels", "read_original_labels",
    "default_cache_dir", "load_bloodcells", "original_cell_counts", "cell_groups",
    # near-duplicate groups (which images are copies of one original)
    "polar_spectra", "rotation_invariant_similarity", "group_near_duplicates",
    "group_per_class",
]
