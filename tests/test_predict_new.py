"""predict_new: a folder of new images through the submission's own blend and thresholds."""

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from hpa import thresholds as th
from hpa.classes import CHANNELS, CLASS_NAMES, HPA, NUM_CLASSES
from hpa.config.spec import TrainConfig
from hpa.data.images import BitDepth, channel_files, load_image
from hpa.files import InputError
from hpa.inference.tta import predict_probs
from hpa.new_images.ensemble import blended_probabilities, classify, predict_folder
from hpa.new_images.folder import batches, list_images
from hpa.postprocess.blend import combine
from hpa.postprocess.submission import MATCHED, OUT_OF_FOLD, fit_thresholds, images_to_match, submission
from hpa.runtime.checkpoint import load_checkpoint
from hpa.runtime.device import pick_device
from hpa.runtime.loader import CachedImages, make_loader
from hpa.tables import matrix_to_labels, prob_columns, probability_table
from hpa.training.classifier import fit_fold

PROB_COLUMNS = prob_columns(NUM_CLASSES)

from test_train import STATS, toy_problem

MEAN = {"combine": "mean", "weights": {"m": 1.0}}
# predict_new names its probability columns by class.
NAMED = [f"p_{name}" for name in HPA.classes]


def train(folder, epochs, seed=0):
    cache, y = toy_problem()
    fit_fold(TrainConfig(epochs=epochs, batch_size=8, seed=seed), cache, np.arange(32), y[:32], np.arange(32, 48),
             y[32:], STATS, vocabulary=HPA, checkpoint_path=folder / "model.pt", extra={"image_size": 16, "fold": 0})
    return str(folder / "model.pt")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two toy checkpoints: models a (folds c1, c2) and b (fold c2) of a two-model ensemble."""
    return [train(tmp_path_factory.mktemp(f"model{seed}"), 1, seed) for seed in (0, 5)]


def members_of(checkpoints):
    return {"a": checkpoints, "b": checkpoints[1:]}


def write_image(folder, image_id, size, green_square: bool, colors=CHANNELS, sizes=None):
    for color in colors:
        side = (sizes or {}).get(color, size)
        plane = np.full((side, side), 10, dtype=np.uint8)
        if color == "green" and green_square:
            plane[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 200
        Image.fromarray(plane).save(folder / f"{image_id}_{color}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 readable images of assorted sizes, and one of each kind of broken image."""
    path = tmp_path_factory.mktemp("new")
    rng = np.random.default_rng(1)
    for i in range(24):
        write_image(path, f"img{i:02d}", int(rng.choice([16, 24, 64])), bool(rng.integers(2)))
    write_image(path, "partial", 16, True, colors=("red", "green", "blue"))
    write_image(path, "twosizes", 16, True, sizes={"green": 32})
    write_image(path, "truncated", 64, True)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(path / "truncated_blue.png")
    data = (path / "truncated_blue.png").read_bytes()
    (path / "truncated_blue.png").write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not
    (path / "corrupt_red.png").write_bytes(b"junk")
    for color in ("green", "blue", "yellow"):
        write_image(path, "corrupt", 16, False, colors=(color,))
    return path


USABLE = [f"img{i:02d}" for i in range(24)]


@pytest.fixture(scope="module")
def pipeline(folder, checkpoints, tmp_path_factory):
    """What the workflow's predict and combine_views jobs write for these images: each fold's test table;
    and random OOF tables of 40 labelled training images in 2 folds, for blend and fit_thresholds."""
    tmp_path = tmp_path_factory.mktemp("tables")
    device = pick_device()
    images = np.stack([load_image(channel_files(folder, i, CHANNELS), 16) for i in USABLE])
    rng = np.random.default_rng(0)
    train_ids = [f"t{i:02d}" for i in range(40)]
    y = rng.random((40, NUM_CLASSES)) < 0.3
    labels = pd.DataFrame({"Id": train_ids, "Target": matrix_to_labels(y)})
    folds = pd.DataFrame({"Id": train_ids, "fold": np.arange(40) % 2})
    members = {}
    for name, paths in members_of(checkpoints).items():
        members[name] = {"oof": [], "test": []}
        for k, path in enumerate(paths):
            model, _ = load_checkpoint(path, device)
            probs = predict_probs(model, make_loader(CachedImages(images, np.arange(len(USABLE))), 5), device,
                                  tta="flips", n_classes=NUM_CLASSES)
            members[name]["test"].append(tmp_path / f"{name}{k}_test.csv")
            probability_table(USABLE, probs).to_csv(members[name]["test"][-1], index=False)
        for k in range(2):  # a model's OOF covers every training image once, whatever its test folds
            held = (folds["fold"] == k).to_numpy()
            oof = np.clip(0.5 * y[held] + 0.6 * rng.random((held.sum(), NUM_CLASSES)), 0, 1)
            members[name]["oof"].append(tmp_path / f"{name}{k}_oof.csv")
            probability_table(folds["Id"][held], oof).to_csv(members[name]["oof"][-1], index=False)
    return members, labels, folds


@pytest.fixture(scope="module")
def blended(folder, checkpoints, pipeline):
    """predict_new's probabilities for each way of combining, and the blend's own tables, computed once."""
    members, labels, _ = pipeline
    found = {}
    for combine_as in ("mean", "groups", "weighted"):
        oof, test, how = combine(members, labels, combine_as, weights="fit", groups=[[0, 1], list(range(2, 28))],
                                 classes=CLASS_NAMES)
        probs, skipped, _ = blended_probabilities(folder, members_of(checkpoints), how, tta="flips", aggregate="mean",
                                               batch_size=5, batch=7)
        found[combine_as] = oof, test, probs, skipped
    return found


@pytest.mark.parametrize("method,combine_as", [(m, "mean") for m in sorted(th.METHODS)]
                         + [("per_class", "groups"), ("match_distribution", "weighted")])
def test_the_table_equals_the_submission_row_for_row(pipeline, blended, method, combine_as):
    """Every threshold method and combination: predict_new's probabilities and classes are the submission's
    (match_distribution matched on the folder, which is at least min_images large)."""
    _, labels, folds = pipeline
    oof, test, probs, skipped = blended[combine_as]
    record, _, _, _ = fit_thresholds(oof, labels, folds, method, classes=CLASS_NAMES, top1=method == "global")
    table = classify(probs, skipped, HPA, record, min_images=20).set_index("Id")
    ok = table[table["ok"]]
    assert list(ok.index) == USABLE
    # Equal to the tables' last decimal: a float32 output can differ in its last bit with the other images of
    # its batch (the kernel a batch size gets), and predict_new's batches are not the pipeline's.
    assert np.abs(ok[NAMED].to_numpy() - test.set_index("Id").loc[USABLE].to_numpy()).max() <= 1.01e-6
    assert list(ok["Predicted"]) == list(submission(test, record, USABLE)["Predicted"])
    assert set(ok["thresholds"]) == {MATCHED if method == "match_distribution" else OUT_OF_FOLD}


def test_match_distribution_falls_back_to_the_out_of_fold_thresholds_on_a_small_folder(pipeline, blended):
    _, labels, folds = pipeline
    oof, test, probs, skipped = blended["mean"]
    record, _, _, _ = fit_thresholds(oof, labels, folds, "match_distribution", classes=CLASS_NAMES)
    ok = classify(probs, skipped, HPA, record, min_images=25).set_index("Id").query("ok")
    assert list(ok["Predicted"]) == matrix_to_labels(th.predict(ok[NAMED].to_numpy(), record["thresholds"]))
    assert ok["thresholds"].str.startswith(OUT_OF_FOLD).all()
    assert "needs at least 25 images to match rates; these are 24" in ok["thresholds"].iloc[0]
    matched = submission(test, record, USABLE)["Predicted"]
    assert list(ok["Predicted"]) != list(matched)  # the fallback is not what matching would give


def test_match_distribution_needs_one_image_per_rarest_class_frequency(pipeline, blended):
    assert images_to_match([0.0, 0.004, 0.5]) == 250  # a class without positives is never matched anyway
    _, labels, folds = pipeline
    oof, _, probs, skipped = blended["mean"]
    record, _, _, _ = fit_thresholds(oof, labels, folds, "match_distribution", classes=CLASS_NAMES)
    n = images_to_match(record["train_frequency"])
    assert n <= 24
    assert set(classify(probs, skipped, HPA, record).query("ok")["thresholds"]) == {MATCHED}
    record["train_frequency"] = [1 / 25, *record["train_frequency"][1:]]
    assert classify(probs, skipped, HPA, record).query("ok")["thresholds"].str.startswith(OUT_OF_FOLD).all()


def test_every_skipped_image_gets_its_reason_and_readable_ones_of_any_size_are_classified(folder, checkpoints):
    table = predict_folder(folder, {"m": checkpoints}, MEAN, {"method": "per_class", "thresholds": [0.5] * 28,
                                                                  "top1": True},
                           tta="flips", aggregate="mean").set_index("Id")
    assert set(table.index) == {*USABLE, "partial", "twosizes", "truncated", "corrupt"}
    assert table.loc[USABLE, "ok"].all() and (table.loc[USABLE, "reason"].fillna("") == "").all()
    reasons = table.loc[~table["ok"], "reason"]
    assert reasons["partial"].startswith("missing channel yellow")
    assert reasons["twosizes"].startswith("channel green is (32, 32), the others are (16, 16)")
    assert reasons["corrupt"].startswith("unreadable channel red")
    assert reasons["truncated"].startswith("could not decode")
    assert table.loc[~table["ok"], NAMED].isna().all().all() and (table.loc[~table["ok"], "Predicted"] == "").all()
    assert (table.loc[USABLE, "Predicted"] != "").all()  # top1: at least one class
    names = table.loc[USABLE[0], "Predicted_names"].split("; ")
    assert len(names) == len(table.loc[USABLE[0], "Predicted"].split())


def test_images_stream_through_in_batches(folder):
    seen = []
    files, _ = list_images(folder, CHANNELS)
    for good, arrays, bad in batches(files, [*USABLE, "truncated"], CHANNELS, {16, 8}, BitDepth(), batch=5):
        assert len(good) + len(bad) <= 5 and arrays[16].shape[0] == arrays[8].shape[0] == len(good)
        seen += good + [i for i, _ in bad]
    assert seen == [*USABLE, "truncated"]


def write_new_image_sheet(folder, ids, path, extra=True):
    """A sample sheet of new images naming the folder's files by absolute path, training's split and
    Target columns (optional for new images) included when ``extra``."""
    head = ["Id", *(["split", "Target"] if extra else []), *CHANNELS]
    rows = ["\t".join([i, *(["test", ""] if extra else []), *(str(next(folder.glob(f"{i}_{c}.*"), f"gone_{c}"))
                                                            for c in CHANNELS)]) for i in ids]
    path.write_text("\n".join(["\t".join(head), *rows]) + "\n")
    return path


def test_a_sample_sheet_of_new_images_gives_the_folders_table(folder, checkpoints, tmp_path):
    """A lab names its files its own way: a sheet naming the folder's images gives the same probabilities
    (hence the submission's rows, test_the_table_equals_the_submission_row_for_row), and its broken rows
    their reasons."""
    members = members_of(checkpoints)
    how = {"combine": "mean", "weights": {"a": 0.5, "b": 0.5}}
    sheet = write_new_image_sheet(folder, [*USABLE, "partial", "corrupt", "../x"], tmp_path / "new.tsv")
    from_sheet, sheet_skipped, _ = blended_probabilities(sheet, members, how, tta="flips", aggregate="mean",
                                                         batch_size=5, batch=7)
    from_folder, _, _ = blended_probabilities(folder, members, how, tta="flips", aggregate="mean", batch_size=5,
                                              batch=7)
    assert list(from_sheet["Id"]) == USABLE
    assert np.abs(from_sheet[PROB_COLUMNS].to_numpy()
                  - from_folder.set_index("Id").loc[USABLE][PROB_COLUMNS].to_numpy()).max() <= 1.01e-6
    reasons = dict(sheet_skipped)
    assert reasons["partial"] == (f"channel yellow: file {tmp_path / 'gone_yellow'} not found; fix its path in the "
                                  "sample sheet (relative to the sheet's folder, or absolute)")
    assert reasons["corrupt"].startswith("unreadable channel red")
    assert "new.tsv, line 28: Id '../x' cannot name a file" in reasons["../x"]
    bare = write_new_image_sheet(folder, USABLE[:2], tmp_path / "bare.tsv", extra=False)
    assert list(blended_probabilities(bare, members, how, tta="flips", aggregate="mean")[0]["Id"]) == USABLE[:2]


def test_a_folder_matching_no_channel_says_what_it_expected_and_found_in_one_line(tmp_path, checkpoints):
    for name in ("te0003-p4-dapi.tif", "te0003-p4-gfp.tif"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    with pytest.raises(InputError) as error:
        predict_folder(tmp_path, {"m": checkpoints[:1]}, MEAN, {"method": "per_class", "thresholds": [0.5] * 28},
                       tta="none", aggregate="mean")
    message = str(error.value)
    assert "\n" not in message
    assert (f"the channel names [] (files such as ['te0003-p4-dapi.tif', 'te0003-p4-gfp.tif']), "
            f"the ensemble's models were trained on {list(CHANNELS)}") in message
    assert "give new_images a sample sheet" in message


def test_missing_folder_says_what_to_set(tmp_path, checkpoints):
    with pytest.raises(FileNotFoundError, match="new_images"):
        predict_folder(tmp_path / "nope", {"m": checkpoints[:1]}, MEAN, {"method": "per_class",
                       "thresholds": [0.5] * 28}, tta="none", aggregate="mean")


def test_a_timm_checkpoint_predicts_a_folder_of_mixed_formats(tmp_path):
    cache, y = toy_problem()
    path = tmp_path / "timm.pt"
    fit_fold(TrainConfig(arch="timm/resnet10t", epochs=1, batch_size=8), cache, np.arange(32), y[:32],
             np.arange(32, 48), y[32:], STATS, vocabulary=HPA, checkpoint_path=path, extra={"image_size": 16, "fold": 0})
    folder = tmp_path / "new"
    folder.mkdir()
    write_image(folder, "png", 24, True)
    for color in CHANNELS:  # the same image as 16-bit TIFFs, 4 bits of headroom: bits=4 gives it back
        plane = np.asarray(Image.open(folder / f"png_{color}.png")).astype(np.uint16)
        Image.fromarray(plane << 4).save(folder / f"tiff_{color}.tiff")
    table = predict_folder(folder, {"m": [str(path)]}, MEAN, {"method": "per_class", "thresholds": [0.5] * 28},
                           tta="none", aggregate="mean", depth=BitDepth("shift", bits=4)).set_index("Id")
    assert table["ok"].all() and list(table.index) == ["png", "tiff"]
    probs = table[NAMED]
    assert np.allclose(probs.loc["png"], probs.loc["tiff"], atol=1e-6)


def test_a_label_transferring_ensemble_is_refused_by_name_before_any_job(tmp_path):
    from conftest import TINY, snakemake

    (tmp_path / "new").mkdir()
    config = {**TINY, "new_images": "new", "ensembles": {"near": {"models": ["tiny"], "transfer": True}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "results/new_images/near.csv", check=False)
    assert result.returncode != 0
    assert "predict_new: ensembles.near has transfer: true" in result.stdout + result.stderr
    config["ensembles"]["near"]["transfer"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(tmp_path, "-n", "results/new_images/near.csv", check=False).returncode == 0


def test_panels_show_each_new_images_cells_and_skip_one_that_cannot_be_read(tmp_path, checkpoints):
    from hpa.demo.render import render_field
    from hpa.new_images.panels import write_panels

    folder = tmp_path / "fields"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):
        image = render_field({0, 25}, 64, rng)
        for c, color in enumerate(CHANNELS):
            Image.fromarray(image[c]).save(folder / f"f{k}_{color}.png")
    record = {"method": "per_class", "thresholds": [0.5] * NUM_CLASSES}
    combination = {"combine": "mean", "weights": {"a": 0.5, "b": 0.5}}
    table = predict_folder(folder, members_of(checkpoints), combination, record, tta="none", aggregate="mean",
                           batch_size=4)
    table = pd.concat([table, table.iloc[[0]].assign(Id="ghost")], ignore_index=True)  # listed, files gone
    cells = write_panels(folder, table, members_of(checkpoints), record, tmp_path / "panels", nucleus="blue",
                         body=["red", "yellow"], depth=BitDepth(), fit="pad", tta="flips")
    assert sorted(p.name for p in (tmp_path / "panels").glob("*.jpg")) == ["f0.jpg", "f1.jpg", "f2.jpg"]
    skipped = pd.read_csv(tmp_path / "panels/skipped.csv")
    assert skipped["Id"].tolist() == ["ghost"]
    assert set(cells["Id"]) == {"f0", "f1", "f2"} and cells.groupby("Id").size().min() >= 2
    p = [f"p{k}" for k in range(NUM_CLASSES)]
    best = cells.groupby("Id")[p].max()  # each image's best cell keeps the image's probability
    named = table.set_index("Id").loc[best.index, [f"p_{n}" for n in HPA.classes]].to_numpy()
    assert np.allclose(best.to_numpy(), named, atol=1e-5)
    with Image.open(tmp_path / "panels/f0.jpg") as im:
        assert im.width >= 3 * 100 and im.height > 100
    # cells.method reaches the panels, as it reaches cell_labels: "image" gives every cell its image's.
    flat = write_panels(folder, table, members_of(checkpoints), record, tmp_path / "flat", nucleus="blue",
                        body=["red", "yellow"], depth=BitDepth(), fit="pad", tta="flips", method="image")
    assert np.allclose(flat[p].to_numpy(), table.set_index("Id").loc[flat["Id"], [f"p_{n}" for n in HPA.classes]],
                       atol=1e-5)
    assert not np.allclose(flat[p].to_numpy(), cells[p].to_numpy())


def test_a_field_the_bit_shift_clips_is_named_in_the_clipped_column(tmp_path, checkpoints):
    """A field exported at 16 times the others' range keeps its prediction, and says what was clipped."""
    folder = tmp_path / "new"
    folder.mkdir()
    write_image(folder, "png", 24, True)
    for name, bits in (("dim", 4), ("bright", 8)):  # the shift by 4 fits dim; bright's green square clips
        for color in CHANNELS:
            plane = np.asarray(Image.open(folder / f"png_{color}.png")).astype(np.uint16)
            Image.fromarray(plane << bits).save(folder / f"{name}_{color}.tiff")
    clipped = {}
    table = predict_folder(folder, {"m": checkpoints[:1]}, MEAN, {"method": "per_class", "thresholds": [0.5] * 28},
                           tta="none", aggregate="mean", depth=BitDepth("shift", bits=4), clipped=clipped)
    notes = table.set_index("Id")["clipped"]
    assert notes["png"] == "" and notes["dim"] == ""
    assert notes["bright"] == "green 25% at 255, 0% at 0"
    assert [r["channel"] for r in clipped["bright"]] == ["green"]
