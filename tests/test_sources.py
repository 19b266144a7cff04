"""Any dataset into the manifest: labels through the Vocabulary, sample sheets, Kaggle layouts with
other columns, file-safe Ids, canonical training and test labels, and the source keys' checks."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY, snakemake, write_kaggle_source
from PIL import Image

from hpa.classes import HPA, Vocabulary
from hpa.config.checks import check_source
from hpa.data.ingest import ingest, manifest_files
from hpa.data.label_files import train_labels, true_test_labels
from hpa.data.samples import check_sheet, read_sheet, sheet_rows
from hpa.postprocess.summary import reason_kind
from hpa.tables import InputError, read_canonical_labels, read_labels, read_test_ids

LAB = Vocabulary(("Nucleus", "Cytosol", "Membrane", "Golgi", "Mito", "Vesicles"), ("dapi", "protein", "tubulin"),
                 {"blue": "dapi", "green": "protein", "red": "tubulin"}, ";")


def write_sheet(root, rows, sep="\t", name="samples.tsv", channels=LAB.channels, size=(24, 16)):
    """A sample sheet under root/ and a 16-bit TIFF per channel under root/plates/ (rows: Id, split, Target)."""
    (root / "plates").mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(0)
    lines = [sep.join(["Id", "split", "Target", *channels])]
    for image_id, split, target in rows:
        files = []
        for channel in channels:
            name_ = f"plates/{image_id.replace('/', '-')}_{channel}.tif"
            Image.fromarray(gen.integers(0, 4096, size[::-1], dtype=np.uint16)).save(root / name_)
            files.append(name_)
        lines.append(sep.join([image_id, split, target, *files]))
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


ROWS = [("a1", "train", "Nucleus;Cytosol"), ("a2", "train", "2"), ("a3", "train", "Golgi ; 5"),
        ("a4", "train", "Mito"), ("t1", "test", ""), ("t2", "test", "")]


# --- labels through the Vocabulary -------------------------------------------------------------


@pytest.mark.parametrize("separator,cells,canonical", [
    (" ", ["0 16", "16 Cytosol"], ["0 16", "16 25"]),
    ("|", ["16|0", "Nucleoplasm|Cytosol"], ["0 16", "0 25"]),
    (";", ["0;16", "Cytosol; 0"], ["0 16", "0 25"]),
])
def test_labels_may_be_names_or_indices_split_by_the_configured_separator(tmp_path, separator, cells, canonical):
    path = _write(tmp_path / "train.csv", "Id,Target\n" + "".join(f'x{i},"{c}"\n' for i, c in enumerate(cells)))
    assert read_labels(path, Vocabulary(separator=separator))["Target"].tolist() == canonical


def test_a_2021_style_file_reads_through_its_id_and_target_columns(tmp_path):
    vocab = Vocabulary(tuple(f"c{k}" for k in range(19)), separator="|")
    path = tmp_path / "train.csv"
    path.write_text("ID,Label\n5c27f04c-bb99-11e8-b2b9-ac1f6b6435d0,8|5|0\nabc,18\n")
    table = read_labels(path, vocab, id_column="ID", target_column="Label")
    assert table.to_dict("list") == {"Id": ["5c27f04c-bb99-11e8-b2b9-ac1f6b6435d0", "abc"], "Target": ["0 5 8", "18"]}
    sub = tmp_path / "sample_submission.csv"
    sub.write_text("ID,ImageWidth,ImageHeight,PredictionString\nt1,2048,2048,0 1 eNoLCAgIMAEABJkBdQ==\n")
    assert read_test_ids(sub, "ID")["Id"].tolist() == ["t1"]
    with pytest.raises(InputError, match=r"missing column\(s\) \['ID', 'Label'\].*kaggle.id_column"):
        read_labels(_write(tmp_path / "y.csv", "Id,Target\na,1\n"), vocab, id_column="ID", target_column="Label")
    with pytest.raises(InputError, match=r"line 3 \(Id abc\): Target '19'.*index 0..18"):
        read_labels(_write(tmp_path / "z.csv", "ID,Label\na,1\nabc,19\n"), vocab, id_column="ID", target_column="Label")


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("bad_id", ["../up", "a/b", ".hidden", "tab\there"])
def test_an_id_that_cannot_name_a_file_refuses_a_labels_csv_by_line(tmp_path, bad_id):
    path = _write(tmp_path / "train.csv", f'Id,Target\nok,0\n"{bad_id}",1\n')
    with pytest.raises(InputError, match="line 3: Id .* cannot name a file"):
        read_labels(path, HPA)


def test_canonical_labels_read_for_any_number_of_classes(tmp_path):
    path = _write(tmp_path / "labels.csv", "Id,Target,source\na,0 39,kaggle\nb,3,kaggle\n")
    assert read_canonical_labels(path, 40)["Target"].tolist() == ["0 39", "3"]
    with pytest.raises(InputError, match="class 39 is outside 0..9"):
        read_canonical_labels(path, 10)


# --- sample sheets ------------------------------------------------------------------------------


@pytest.mark.parametrize("sep,name", [("\t", "samples.tsv"), (",", "samples.csv"), ("\t", "samples.txt"),
                                      (";", "sheet.dat")])
def test_a_sheet_is_read_by_extension_or_by_sniffing(tmp_path, sep, name):
    path = write_sheet(tmp_path, ROWS, sep=sep, name=name)
    sheet = read_sheet(path)
    assert list(sheet.columns) == ["Id", "split", "Target", *LAB.channels] and len(sheet) == len(ROWS)


def test_a_sheet_that_cannot_be_meant_is_refused_whole_naming_file_and_fix(tmp_path):
    with pytest.raises(InputError, match="samples.tsv not found; write the sample sheet there"):
        read_sheet(tmp_path / "samples.tsv")
    path = write_sheet(tmp_path, ROWS, channels=("dapi", "protein"))
    with pytest.raises(InputError, match=r"samples.tsv: missing column\(s\) tubulin; .*one column per channel"):
        check_sheet(read_sheet(path), path, LAB)
    path = write_sheet(tmp_path, [(i, "test", t) for i, _, t in ROWS])
    with pytest.raises(InputError, match="no row has split 'train'"):
        check_sheet(read_sheet(path), path, LAB)
    path = write_sheet(tmp_path, ROWS[:4] + [("t1", "test", "Mito"), ("t2", "test", "")])
    with pytest.raises(InputError, match=r"1 of 2 test rows have no Target \(e.g. line 7, Id t2\).*label every"):
        check_sheet(read_sheet(path), path, LAB)
    assert check_sheet(read_sheet(write_sheet(tmp_path, ROWS)), path, LAB) is False
    labelled = write_sheet(tmp_path, ROWS[:4] + [("t1", "test", "Mito"), ("t2", "test", "0")])
    assert check_sheet(read_sheet(labelled), labelled, LAB) is True


def test_each_bad_row_is_refused_by_line_with_its_fix_and_the_others_are_kept(tmp_path):
    rows = ROWS + [("a1", "train", "Mito"), ("../x", "train", "0"), ("v1", "validation", "0"),
                   ("a9", "train", "Ribosome"), ("a8", "train", "")]
    path = write_sheet(tmp_path, rows)
    kept, refused = sheet_rows(path, LAB)
    assert kept["Id"].tolist() == ["a2", "a3", "a4", "t1", "t2"]
    assert kept["Target"].tolist() == ["2", "3 5", "4", "", ""]
    assert kept["file_dapi"][0] == str(tmp_path / "plates/a2_dapi.tif")
    reasons = dict(zip(refused["Id"] + "/" + refused["kind"], refused["reason"]))
    assert "line 8 (Id a1): Id a1 is on lines 2, 8; give each image its own Id" in reasons["a1/duplicate_id"]
    assert "line 9 (Id ../x): Id '../x' cannot name a file" in reasons["../x/bad_id"]
    assert ("line 10 (Id v1): split 'validation' fails the sheet's schema ('validation' is not one of "
            "['train', 'test']); write one of train, test in the sheet") in reasons["v1/bad_split"]
    assert "'Ribosome' is neither a class name nor an index 0..5" in reasons["a9/bad_target"]
    assert "empty Target" in reasons["a8/bad_target"]
    assert (refused["kind"] == "duplicate_id").sum() == 2  # both rows: which one is right is not known
    assert {reason_kind(r) for r in refused["reason"]} == {
        "repeated Id", "Id that cannot name a file", "unknown split", "Target naming no class"}


def test_the_sheet_schema_is_in_snakemakes_draft_and_can_fail(tmp_path, caplog):
    """Snakemake's validate() warned "schema file may not be validated correctly" on every sheet run
    (the schema declared draft-07), and a schema of strings over cells read as text never failed."""
    import logging

    from snakemake.utils import validate

    from hpa.data.samples import SCHEMA, schema_problem

    sheet = read_sheet(write_sheet(tmp_path, ROWS))
    with caplog.at_level(logging.DEBUG):
        validate(sheet, schema=str(SCHEMA))
    assert not [r for r in caplog.records if "may not be validated" in r.getMessage()]
    assert schema_problem(sheet.iloc[0], "here") == ("", "")
    kind, reason = schema_problem(dict(Id="a", split="Train", Target=""), "here")
    assert kind == "bad_split" and "here: split 'Train' fails the sheet's schema" in reason


def test_ingest_of_a_sheet_writes_each_channels_file_and_skips_a_row_with_a_missing_file(tmp_path):
    rows = ROWS + [("a5", "train", "Cytosol")]
    path = write_sheet(tmp_path, rows)
    (tmp_path / "plates/a5_tubulin.tif").unlink()
    manifest, rejected = ingest(None, "samples", vocab=LAB, samples=path, max_rejected_fraction=0.5)
    assert manifest["Id"].tolist() == ["a1", "a2", "a3", "a4", "t1", "t2"]
    assert manifest.columns.tolist()[-3:] == ["file_dapi", "file_protein", "file_tubulin"]
    assert (manifest["width"] == 24).all() and (manifest["height"] == 16).all()
    assert (manifest["image_dir"] == "").all() and manifest["Target"].tolist()[:2] == ["0 1", "2"]
    assert rejected.loc[0, "kind"] == "missing"
    assert f"channel tubulin: file {tmp_path}/plates/a5_tubulin.tif not found" in rejected.loc[0, "reason"]
    files = manifest_files(manifest.iloc[0], LAB.channels)
    assert files == {c: tmp_path / f"plates/a1_{c}.tif" for c in LAB.channels}


def test_too_many_bad_rows_stop_ingest_naming_the_sheet(tmp_path):
    path = write_sheet(tmp_path, ROWS + [("v1", "val", "0"), ("v2", "val", "0"), ("v3", "val", "0")])
    with pytest.raises(InputError, match=r"samples.tsv: 3 of 9 listed images are unusable.*\n.*split other than"):
        ingest(None, "samples", vocab=LAB, samples=path, max_rejected_fraction=0.2)
    manifest, rejected = ingest(None, "samples", vocab=LAB, samples=path, max_rejected_fraction=0.5)
    assert len(manifest) == 6 and rejected["split"].tolist() == ["val"] * 3


def test_a_kaggle_layout_manifest_names_each_channels_file(kaggle_source):
    manifest, _ = ingest(kaggle_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5)
    row = manifest.iloc[0]
    assert row["file_red"] == str(kaggle_source / "train" / f"{row['Id']}_red.png")
    assert manifest_files(row, HPA.channels) == manifest_files(row.drop(["file_red", "file_green", "file_blue",
                                                                       "file_yellow"]), HPA.channels)


def test_a_kaggle_layout_with_other_channels_and_columns(tmp_path):
    root = tmp_path / "lab"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for split, image_id in (("train", "p1"), ("train", "p2"), ("test", "q1")):
        for channel in LAB.channels:
            Image.fromarray(np.zeros((8, 12), np.uint16)).save(root / split / f"{image_id}_{channel}.tif")
    (root / "train.csv").write_text("Image,Classes\np1,Nucleus;Golgi\np2,5\n")
    (root / "sample_submission.csv").write_text("Image,Predicted\nq1,\n")
    manifest, rejected = ingest(root, "kaggle", vocab=LAB, id_column="Image", target_column="Classes")
    assert rejected.empty and manifest["Target"].tolist() == ["0 3", "5", ""]
    assert manifest["file_tubulin"][2] == str(root / "test/q1_tubulin.tif")


# --- canonical training and test labels ---------------------------------------------------------


def test_training_labels_are_every_listed_row_in_canonical_form(tmp_path, kaggle_source):
    path = write_sheet(tmp_path, ROWS + [("bad", "train", "Ribosome")])
    table = train_labels("samples", LAB, samples=path)
    assert table.to_dict("list") == {"Id": ["a1", "a2", "a3", "a4"], "Target": ["0 1", "2", "3 5", "4"],
                                     "source": ["samples"] * 4}
    listed = pd.read_csv(kaggle_source / "train.csv", dtype=str)
    table = train_labels("kaggle", HPA, train_csv=kaggle_source / "train.csv")
    assert table["Id"].tolist() == listed["Id"].tolist() and table["Target"].tolist() == listed["Target"].tolist()


def test_test_labels_are_normalised_and_must_label_exactly_the_test_images(tmp_path):
    sub = _write(tmp_path / "sample_submission.csv", "ID,PredictionString\nt1,\nt2,\n")
    truth = _write(tmp_path / "truth.csv", "ID,Label\nt2,Cytosol|0\nt1,16\n")
    vocab = Vocabulary(separator="|")
    table = true_test_labels(vocab, truth=truth, test_ids=sub, id_column="ID", target_column="Label")
    assert table.to_dict("list") == {"Id": ["t2", "t1"], "Target": ["0 25", "16"]}
    _write(truth, "ID,Label\nt2,0\nt1,16\nt9,3\n")
    with pytest.raises(InputError, match="1 Id.* not test images .* e.g. t9"):
        true_test_labels(vocab, truth=truth, test_ids=sub, id_column="ID", target_column="Label")
    _write(truth, "ID,Label\nt2,0\n")
    with pytest.raises(InputError, match="1 test image.* have no labels, e.g. t1; label every test image"):
        true_test_labels(vocab, truth=truth, test_ids=sub, id_column="ID", target_column="Label")
    sheet = write_sheet(tmp_path, ROWS[:4] + [("t1", "test", "Mito"), ("t2", "test", "Golgi;0")])
    assert true_test_labels(LAB, samples=sheet).to_dict("list") == {"Id": ["t1", "t2"], "Target": ["4", "0 3"]}


# --- config checks and dry runs -----------------------------------------------------------------


def filled(**changes):
    config = copy.deepcopy(TINY) | changes
    config["external"] = dict(config["external"], use=changes.get("external", {}).get("use", False))
    return config


@pytest.mark.parametrize("config,message", [
    (filled(samples="s.tsv"), "samples: s.tsv is only read with source: samples"),
    (filled(source="samples"), "source: samples needs samples: path/to/samples.tsv"),
    (filled(test_labels="t.csv"), "test_labels: t.csv cannot be used with source: demo"),
    (filled(source="samples", samples="s.tsv", test_labels="t.csv"), "a sample sheet's test rows hold them"),
    (filled(external={"use": True}, labels={"names": ["a", "b"]}), "external.use: the HPAv18 images carry"),
    (filled(external={"use": True}, channels={"names": ["red", "green", "blue"]}), "channels red, green, blue"),
    (filled(source="samples", samples="s.tsv", external={"use": True}), "not a sample sheet"),
])
def test_contradicting_source_keys_are_refused_by_name(config, message):
    with pytest.raises(ValueError, match=message):
        check_source(config, Vocabulary.from_config(config))


def test_the_source_keys_that_agree_pass():
    for config in (filled(source="kaggle", test_labels="t.csv"),
                   filled(source="samples", samples="s.tsv", labels={"names": ["a"]}), filled(external={"use": True})):
        check_source(config, Vocabulary.from_config(config))


def lab_config(**extra):
    config = {k: v for k, v in TINY.items() if k not in ("demo", "external")}
    return config | {"source": "samples", "samples": "sheet/samples.tsv", "external": {"use": False},
                     "labels": {"names": list(LAB.classes), "separator": ";"},
                     "channels": {"names": list(LAB.channels), "rgb": LAB.rgb}} | extra


def dry_rules(workdir, config) -> str:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return snakemake(workdir, "-n", "--quiet", "rules", check=False)


def test_a_sample_sheet_config_plans_the_pipeline_and_scores_its_labelled_test_rows(tmp_path):
    write_sheet(tmp_path / "sheet", ROWS[:4] + [("t1", "test", "Mito"), ("t2", "test", "0")])
    result = dry_rules(tmp_path, lab_config())
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    for rule in ("labels", "test_labels", "ingest", "count_labels", "train", "evaluate_test", "compare_ensembles"):
        assert rule in out
    assert "make_demo" not in out and "hash_images" not in out
    write_sheet(tmp_path / "sheet", ROWS)  # unlabelled test rows: no scoring
    out = dry_rules(tmp_path, lab_config()).stdout
    assert "ingest" in out and "evaluate_test" not in out and "test_labels" not in out


def test_a_sample_sheet_missing_a_channel_column_stops_the_dry_run_naming_it(tmp_path):
    write_sheet(tmp_path / "sheet", ROWS, channels=("dapi", "protein"))
    result = dry_rules(tmp_path, lab_config())
    assert result.returncode != 0
    assert "sheet/samples.tsv: missing column(s) tubulin" in result.stdout + result.stderr


def test_hpa2021_plans_the_pipeline_from_its_kaggle_files(tmp_path):
    root = write_kaggle_source(tmp_path / "resources/hpa2021", {"a": "0", "b": "1", "c": "18"}, ["t"])
    (root / "train.csv").write_text("ID,Label\na,8|5|0\nb,18\nc,16|0\n")
    (root / "sample_submission.csv").write_text("ID,ImageWidth,ImageHeight,PredictionString\nt,2048,2048,\n")
    (tmp_path / "config.yaml").write_text((REPO / "config/hpa2021.yaml").read_text())
    out = snakemake(tmp_path, "-n", "--quiet", "rules").stdout
    for rule in ("vocabulary", "labels", "ingest", "cache_images", "train", "make_submission", "count_labels"):
        assert rule in out
    assert "evaluate_test" not in out and "download_external" not in out
    config = yaml.safe_load((REPO / "config/hpa2021.yaml").read_text())
    assert len(config["labels"]["names"]) == 19 and config["labels"]["names"][18] == "Negative"


def test_test_labels_turn_the_scoring_on_for_a_kaggle_source(tmp_path):
    root = write_kaggle_source(tmp_path / "resources/kaggle", {"a": "0", "b": "1 2", "c": "25"}, ["t"])
    (root / "truth.csv").write_text("Id,Target\nt,3\n")
    config = filled(source="kaggle", test_labels="resources/kaggle/truth.csv")
    out = dry_rules(tmp_path, config).stdout
    assert "test_labels" in out and "evaluate_test" in out


@pytest.mark.workflow
def test_a_sample_sheet_reaches_the_manifest_and_its_labels_through_the_real_rules(tmp_path):
    rows = ROWS[:4] + [("a5", "train", "Ribosome"), ("t1", "test", "Mito"), ("t2", "test", "0")]
    write_sheet(tmp_path / "sheet", rows)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(lab_config(data={"image_size": 32,
                                                                          "max_rejected_fraction": 0.5})))
    targets = ["results/data/manifest.csv", "results/data/labels.csv", "results/data/test_labels.csv"]
    snakemake(tmp_path, *targets)
    manifest = pd.read_csv(tmp_path / targets[0], dtype=str, keep_default_na=False)
    assert manifest["Id"].tolist() == ["a1", "a2", "a3", "a4", "t1", "t2"]
    assert manifest["file_protein"][0] == "sheet/plates/a1_protein.tif" and set(manifest["Target"][4:]) == {""}
    rejected = pd.read_csv(tmp_path / "results/data/rejected.csv")
    assert rejected["kind"].tolist() == ["bad_target"] and "line 6 (Id a5)" in rejected["reason"][0]
    labels = pd.read_csv(tmp_path / targets[1], dtype=str)
    assert labels["Target"].tolist() == ["0 1", "2", "3 5", "4"] and set(labels["source"]) == {"samples"}
    assert pd.read_csv(tmp_path / targets[2], dtype=str).to_dict("list") == {"Id": ["t1", "t2"], "Target": ["4", "0"]}


def test_a_multi_channel_tiff_sheet_decodes_byte_for_byte_as_its_per_channel_files(tmp_path):
    """One file per field (sheet column `file`, channels in channels.names order or named by OME metadata)
    reaches ingest, bit_depth and the cache byte-identical to the per-channel files of the lab example,
    so training on it gives the same figures; a file of another channel count is a row error."""
    import tifffile

    from hpa.data.bit_depth import measure, sheet_files
    from hpa.data.cache import build_cache
    from hpa.data.images import BitDepth
    from hpa.demo.screen import LAB_CLASSES, make_screen

    sheet = make_screen(tmp_path / "screen", n_train=10, n_test=3, shape=(40, 56), seed=1, min_per_class=1)
    table = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    vocab = Vocabulary(tuple(LAB_CLASSES), ("dapi", "protein", "tubulin"),
                       {"blue": "dapi", "green": "protein", "red": "tubulin"}, ";")
    stacked = table[["Id", "split", "Target"]].assign(file=[f"fields/{i}.tif" for i in table["Id"]])
    (tmp_path / "screen/fields").mkdir()
    for k, row in table.iterrows():
        planes = np.stack([tifffile.imread(tmp_path / "screen" / row[c]) for c in vocab.channels])
        out = tmp_path / "screen" / stacked.loc[k, "file"]
        if k == 1:  # OME names decide the order, not the position
            order = [2, 0, 1]
            tifffile.imwrite(out, planes[order], ome=True, metadata={"axes": "CYX", "Channel": {
                "Name": [vocab.channels[i] for i in order]}})
        else:
            tifffile.imwrite(out, planes, photometric="minisblack")
    bad = dict(Id="odd", split="train", Target=table["Target"][0], file="fields/odd.tif")
    tifffile.imwrite(tmp_path / "screen/fields/odd.tif", planes[:2], photometric="minisblack")
    multi = tmp_path / "screen/multi.tsv"
    pd.concat([stacked, pd.DataFrame([bad])]).to_csv(multi, sep="\t", index=False)

    per_channel, _ = ingest(None, "samples", vocab=vocab, samples=sheet, max_rejected_fraction=0.5)
    manifest, rejected = ingest(None, "samples", vocab=vocab, samples=multi, max_rejected_fraction=0.5)
    assert rejected["Id"].tolist() == ["odd"] and rejected["kind"].tolist() == ["channel_count"]
    assert "fields/odd.tif has 2 channel(s), channels.names has 3 (dapi, protein, tubulin)" in rejected["reason"][0]
    assert manifest["Id"].tolist() == per_channel["Id"].tolist()
    assert manifest[["width", "height"]].equals(per_channel[["width", "height"]])
    measured = [{c: measure(paths) for c, paths in sheet_files(source, vocab.channels).items()}
                for source in (sheet, multi)]
    assert measured[0] == measured[1] and measured[0]["protein"]["images"] > 0
    caches = []
    for name, rows in (("one", per_channel), ("multi", manifest)):
        build_cache(rows, tmp_path / f"{name}.npy", tmp_path / f"{name}.csv", 32, vocab.channels,
                    depth=BitDepth("shift", 4), fit="pad")
        caches.append(np.load(tmp_path / f"{name}.npy"))
    assert caches[0].tobytes() == caches[1].tobytes() and caches[0].any()


def test_a_fields_multi_channel_file_is_decoded_once_for_all_its_channels_and_again_once_rewritten(tmp_path,
                                                                                                     monkeypatch):
    import tifffile

    from hpa.data import stacks
    from hpa.data.images import BitDepth, decode_field

    opened = []

    class Counting(tifffile.TiffFile):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(stacks.tifffile, "TiffFile", Counting)
    stacks._series.cache_clear()
    planes = np.arange(3 * 6 * 8, dtype=np.uint16).reshape(3, 6, 8) * 20  # 12-bit
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, planes, photometric="minisblack", compression="zlib")
    files = {c: stacks.plane_ref(path, k) for k, c in enumerate(("dapi", "protein", "tubulin"))}
    field, _ = decode_field(files, None, BitDepth("shift", 4))
    assert len(opened) == 1 and np.array_equal(field, (planes >> 4).astype(np.uint8))
    tifffile.imwrite(path, planes[::-1], photometric="minisblack")  # rewritten: its new planes, not the old
    field, _ = decode_field(files, None, BitDepth("shift", 4))
    assert len(opened) == 2 and np.array_equal(field, (planes[::-1] >> 4).astype(np.uint8))


def test_labels_and_source_tables_need_their_vocabulary(tmp_path):
    # A source's classes are its own: no silent fallback to the atlas's 28.
    import inspect

    from hpa.data.ingest import source_table
    path = _write(tmp_path / "x.csv", "Id,Target\na,1\n")
    with pytest.raises(TypeError):
        read_labels(path)
    assert inspect.signature(source_table).parameters["vocab"].default is inspect.Parameter.empty
