from __future__ import annotations

import pytest

from pipeline.config import ConfigError, load_section
from pipeline.mimic.labels import LabelsParams
from pipeline.studies import StudiesParams


def write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_nested_section_is_typed(tmp_path):
    path = write(tmp_path, "studies:\n  views:\n    max_images: 2\n  text:\n    require: both\n")
    params = load_section(StudiesParams, "studies", path)
    assert params.views.max_images == 2 and params.views.require_frontal is True
    assert params.text.require == "both"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("studies:\n  veiws: {}\n", "unknown key 'veiws' \\(did you mean 'views'\\?\\)"),
        (
            "studies:\n  views:\n    max_image: 3\n",
            "studies.views: unknown key 'max_image' \\(did you mean 'max_images'\\?\\)",
        ),
        ("studies:\n  text:\n    require: all\n", "require must be one of"),
        ("studies:\n  path_style: posix\n", "path_style must be"),
        ("studys: {}\n", "section 'studies' is missing \\(did you mean 'studys'\\?\\)"),
        ("studies: [1, 2]\n", "expected a mapping"),
    ],
)
def test_bad_params_are_explained(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_section(StudiesParams, "studies", write(tmp_path, text))


def test_labels_section(tmp_path):
    path = write(tmp_path, "labels:\n  source: negbio\n  sections: [findings]\n")
    assert load_section(LabelsParams, "labels", path).sections == ("findings",)
    with pytest.raises(ConfigError, match="source must be one of"):
        load_section(LabelsParams, "labels", write(tmp_path, "labels:\n  source: chexbert\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_section(StudiesParams, "studies", tmp_path / "nope.yaml")
