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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # strict types, every message naming params.yaml:section.key and what is expected
        (
            "studies:\n  views:\n    max_images: 2.0\n",
            r"studies.views.max_images: expected an integer, got 2.0",
        ),
        (
            "studies:\n  check_image_list: 'false'\n",
            r"studies.check_image_list: expected true or false, got 'false'",
        ),
        (
            "studies:\n  check_image_list: 1\n",
            r"studies.check_image_list: expected true or false, got 1 \(int\)",
        ),
        ("studies:\n  path_style: 3\n", r"studies.path_style: expected a string, got 3 \(int\)"),
        ("labels:\n  sections: impression\n", r"labels.sections: expected a list"),
        ("labels:\n  sections: [impression, 3]\n", r"labels.sections\[1\]: expected a string, got 3"),
        ("labels:\n  workers: yes\n", r"labels.workers: expected an integer, got True \(bool\)"),
        (
            "shards:\n  max_reject_fraction: 1e-2\n",
            r"shards.max_reject_fraction: expected a number, got '1e-2'.*decimal point",
        ),
        ("shards:\n  seed: -1\n", r"shards.seed: a seed must lie in 0 … 4294967295, got -1"),
        ("shards:\n  seed: 4294967296\n", r"shards.seed: a seed must lie in 0"),
        ("shards:\n  splits: []\n", r"shards: splits is empty"),
        ("shards: 3\n", r"shards: expected a mapping, got 3 \(int\)"),
    ],
)
def test_types_are_strict_and_name_the_key(tmp_path, text, message):
    from pipeline.shards import ShardsConfig

    schema = {"studies": StudiesParams, "labels": LabelsParams, "shards": ShardsConfig}[text.split(":")[0]]
    with pytest.raises(ConfigError, match=message) as info:
        load_section(schema, text.split(":")[0], write(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path / "params.yaml")) and "\n" not in str(info.value)


def test_ints_stand_for_floats_and_lists_for_tuples(tmp_path):
    from pipeline.shards import ShardsConfig

    cfg = load_section(
        ShardsConfig, "shards", write(tmp_path, "shards:\n  max_reject_fraction: 1\n  splits: [test]\n")
    )
    assert cfg.max_reject_fraction == 1.0 and isinstance(cfg.max_reject_fraction, float)
    assert cfg.splits == ("test",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"studies: {views: [\n", r"params.yaml: line 2, column 1: invalid YAML"),
        (b"studies:\n\tviews: {}\n", r"params.yaml: line 2, column 1: invalid YAML"),
        (b"# caf\xe9\nstudies: {}\n", r"params.yaml: line 1: not UTF-8 text; save the file as UTF-8"),
        (
            b"studies: {}\nlabels: {}\nstudies: {}\n",
            r"line 3, column 1: invalid YAML \(key 'studies' appears twice",
        ),
        (b"- studies\n", r"expected a mapping of sections"),
    ],
)
def test_unreadable_params_files(tmp_path, data, message):
    path = tmp_path / "params.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=message):
        load_section(StudiesParams, "studies", path)


def test_yaml_merge_keys_still_work_and_may_be_overridden(tmp_path):
    """A duplicate key is refused, but `<<: *anchor` (a YAML merge) is not a duplicate."""
    text = (
        "defaults: &views\n  max_images: 2\n  include_other: true\n"
        "studies:\n  views:\n    <<: *views\n    max_images: 3\n"
    )
    params = load_section(StudiesParams, "studies", write(tmp_path, text))
    assert params.views.max_images == 3 and params.views.include_other is True


def test_paths_and_dataclasses_inside_annotations_skip_the_strict_check():
    """YAML gives a string where a Path is meant, and a nested dataclass has its own checks: neither may be
    refused by the strict type check, at any depth of the annotation."""
    import dataclasses
    from pathlib import Path

    from pipeline.config import check_value

    @dataclasses.dataclass(frozen=True)
    class Item:
        name: str = "x"

    assert check_value(Path | None, "data/x", "p:s.k") == "data/x"
    assert check_value(tuple[Path, ...], ["a", "b"], "p:s.k") == ("a", "b")
    item = Item()
    assert check_value(tuple[Item, ...], [item], "p:s.k") == (item,)
    with pytest.raises(ConfigError, match="expected an integer"):
        check_value(int | None, "3", "p:s.k")
