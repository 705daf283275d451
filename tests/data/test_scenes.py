"""The synthetic scene generator: deterministic, metric z-depth with invalid pixels, masks that agree with
the geometry, and NYUv2 / COCO layouts that the real loaders read back exactly."""

import hashlib
import io

import numpy as np
import PIL.Image
import pytest

from ait_hf.data import coco_id2label, coco_object_masks, load_coco_instances, load_nyu_depth_v2
from ait_hf.data.scenes import (
    ROOM,
    SCENE_CLASS_NAMES,
    SceneConfig,
    SyntheticScene,
    _room_hits,
    main,
    render_scene,
    sample_layout,
    scene_id2label,
    scene_seed,
    write_synthetic_coco,
    write_synthetic_nyu,
    write_synthetic_scenes,
)

SEEDS = range(6)


@pytest.fixture(scope="module")
def scenes() -> list[SyntheticScene]:
    return [render_scene(seed, (72, 96)) for seed in SEEDS]


def _rays(scene: SyntheticScene) -> np.ndarray:
    """World ray directions (H, W, 3), float64, whose camera-z component is 1, built from the camera."""
    height, width = scene.depth.shape
    camera = scene.camera
    cx, cy = camera.principal_point
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    local = np.stack([(cols - cx) / camera.focal, -(rows - cy) / camera.focal, np.ones_like(cols)], axis=-1)
    return local @ np.asarray(camera.rotation, dtype=np.float64).T


def _local(obj, points: np.ndarray) -> np.ndarray:
    """World points (N, 3) in the object's frame (centre at 0, rotated by -yaw about y)."""
    offset = points - obj.center
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    return np.stack(
        [c * offset[:, 0] - s * offset[:, 2], offset[:, 1], s * offset[:, 0] + c * offset[:, 2]], 1
    )


def _surface_distance(obj, points: np.ndarray) -> np.ndarray:
    """Distance (metres) of points from the object's surface, written from the shape's definition."""
    q = _local(obj, points)
    half = np.asarray(obj.size) / 2
    if obj.shape == "sphere":
        return np.abs(np.linalg.norm(q, axis=1) - half[0])
    if obj.shape == "cylinder":
        radial = np.hypot(q[:, 0], q[:, 2])
        side = np.hypot(np.maximum(np.abs(q[:, 1]) - half[1], 0), radial - half[0])
        cap = np.hypot(np.maximum(radial - half[0], 0), np.abs(q[:, 1]) - half[1])
        return np.minimum(side, cap)
    outside = np.maximum(np.abs(q) - half, 0)
    inside = np.minimum(np.max(np.abs(q) - half, axis=1), 0)
    return np.linalg.norm(outside, axis=1) + np.abs(inside)


def _sphere_depth(origin: np.ndarray, rays: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """Nearer root of |origin + t ray - center| = radius per ray (inf on a miss), in float64."""
    offset = origin - center
    a = np.einsum("...i,...i", rays, rays)
    b = rays @ offset
    disc = b * b - a * (offset @ offset - radius**2)
    with np.errstate(invalid="ignore"):
        return np.where(disc >= 0, (-b - np.sqrt(disc)) / a, np.inf)


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_scene_other_seed_other_scene():
    first, again, other = render_scene(3, 64), render_scene(3, 64), render_scene(4, 64)
    for name in ("image", "depth", "instance_masks", "labels", "boxes", "object_ids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.image, other.image)
    assert not np.array_equal(first.depth, other.depth)
    # Seeds as a sequence or a SeedSequence name the same scene.
    np.testing.assert_array_equal(
        render_scene((0, 0, 5), 32).image, render_scene(np.random.SeedSequence([0, 0, 5]), 32).image
    )


def test_layout_depends_on_the_seed_only_not_the_image_size():
    small, large = render_scene(7, 48), render_scene(7, (96, 128))
    assert len(small.layout.objects) == len(large.layout.objects) > 0
    for a, b in zip(small.layout.objects, large.layout.objects):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.center, b.center)
        np.testing.assert_array_equal(a.size, b.size)
    np.testing.assert_array_equal(small.camera.position, large.camera.position)
    assert large.image.shape == (96, 128, 3) and large.depth.shape == (96, 128)


def test_scene_seeds_of_splits_differ_and_test_equals_val():
    assert scene_seed(0, "test", 3) == scene_seed(0, "val", 3)
    assert len({scene_seed(0, "train", 3), scene_seed(0, "test", 3), scene_seed(1, "train", 3)}) == 3
    with pytest.raises(ValueError, match="split"):
        scene_seed(0, "validation", 0)


# ------------------------------------------------------------------------------------------------ depth


def test_depth_in_range_with_invalid_pixels(scenes):
    invalid_fraction = []
    for scene in scenes:
        assert scene.image.dtype == np.uint8 and scene.depth.dtype == np.float32
        valid = scene.depth[scene.depth > 0]
        assert valid.size > 0.5 * scene.depth.size
        assert valid.min() > 0.3 and valid.max() <= 10.0
        assert (scene.depth >= 0).all()
        invalid_fraction.append(float((scene.depth == 0).mean()))
    assert sum(f > 0 for f in invalid_fraction) >= len(scenes) // 2  # windows and sensor holes are common


def test_room_and_camera_ranges_narrow_the_world():
    """(value, value) ranges fix the room and the camera pose; the defaults keep every seed's scene."""
    fixed = SceneConfig(room_width=(5.0, 5.0), room_height=(3.0, 3.0), room_length=(6.0, 6.0),
                        camera_height=(1.4, 1.4), camera_yaw=(0.0, 0.0), camera_pitch=(-0.2, -0.2),
                        camera_roll=(0.0, 0.0))  # fmt: skip
    for index in range(3):
        layout = sample_layout(scene_seed(3, "train", index), fixed)
        rotation, position = layout.camera_pose
        np.testing.assert_allclose(layout.room_size, [5.0, 3.0, 6.0])
        assert position[1] == pytest.approx(1.4)
        np.testing.assert_allclose(rotation[:, 2], [0.0, np.sin(-0.2), np.cos(-0.2)], atol=1e-12)  # forward
        np.testing.assert_allclose(rotation[:, 0], [1.0, 0.0, 0.0], atol=1e-12)  # right: no yaw, no roll
    default = sample_layout(scene_seed(3, "train", 0), SceneConfig())
    assert default.room_size[0] != 5.0 and default.camera_pose[1][1] != pytest.approx(1.4)
    with pytest.raises(ValueError, match="camera_pitch"):
        SceneConfig(camera_pitch=(0.1, -0.1))
    with pytest.raises(ValueError, match="at least 3.0 x 2.4 x 3.0"):
        SceneConfig(room_width=(1.0, 2.0))
    with pytest.raises(ValueError, match="camera_height"):
        SceneConfig(camera_height=(2.5, 2.6))


def test_rays_parallel_to_a_wall_leave_through_another_wall():
    """A direction component of exactly 0 never reaches that axis' walls (it once gave depth -inf: one pixel of
    scene 1062 of the train split of seed 7 at 64x85, whose ray is exactly horizontal)."""
    room = np.array([4.0, 3.0, 5.0])
    rays = np.array([[0.5, 0.0, 1.0], [0.0, 0.0, 1.0], [-0.2, 0.3, 0.0]], dtype=np.float32)
    t, face = _room_hits(room, [1.0, 1.5, 2.0], list(rays.T))  # per-axis component arrays
    # ray 0: z = 5 wall at t 3 (x = 4 at 6); ray 1: z = 5 wall at 3; ray 2: x = 0 wall and ceiling both at 5
    np.testing.assert_allclose(t, [3.0, 3.0, 5.0], rtol=1e-6)
    assert face.tolist() == [5, 5, 2]
    scene = render_scene(scene_seed(7, "train", 1062), size=(64, 85))
    assert np.isfinite(scene.depth).all() and (scene.depth >= 0).all()


def test_invalid_pixels_come_from_windows_holes_and_range():
    seed = 11
    clean = SceneConfig(windows=False, sensor_holes=False, max_depth=100.0)
    assert (render_scene(seed, 64, clean).depth > 0).all()
    full = render_scene(seed, 64, SceneConfig(max_depth=100.0))
    near = render_scene(seed, 64, SceneConfig(windows=False, sensor_holes=False, max_depth=3.0))
    reference = render_scene(seed, 64, clean).depth
    np.testing.assert_array_equal(near.depth, np.where(reference <= 3.0, reference, 0))
    assert (near.depth == 0).any() and (near.depth > 0).any()
    # Holes and windows only blank depth: where the full scene has depth it equals the clean one.
    kept = full.depth > 0
    np.testing.assert_array_equal(full.depth[kept], reference[kept])
    assert not kept.all()


def test_depth_is_metric_z_depth_on_the_seen_surface(scenes):
    """Back-projecting valid depth with the camera lands on the surface the pixel shows: the object of its
    id, or a wall/floor/ceiling of the room box (within 10 micrometres: float32 rounding)."""
    for scene in scenes:
        rays = _rays(scene)
        valid = scene.depth > 0
        points = scene.camera.position + scene.depth[..., None].astype(np.float64) * rays
        for k, obj in enumerate(scene.layout.objects):
            on_object = valid & (scene.object_ids == k)
            if on_object.any():
                assert _surface_distance(obj, points[on_object]).max() < 1e-5
        room = scene.layout.room_size
        on_room = points[valid & (scene.object_ids == ROOM)]
        to_face = np.minimum(np.abs(on_room), np.abs(on_room - room)).min(axis=1)
        assert to_face.max() < 1e-5


def test_visible_object_is_the_nearest_hit(scenes):
    """Each pixel's object is the first one its ray meets (every object tested on every pixel here, no
    culling); sphere depth agrees with an independent float64 intersection."""
    for scene in scenes:
        rays = _rays(scene)
        origin = scene.camera.position
        entries = []
        for obj in scene.layout.objects:
            enter, leave = obj.ray_interval(list(origin), [rays[..., i] for i in range(3)])
            entries.append(np.where((enter <= leave) & (enter > 0), enter, np.inf))
        entries = np.stack(entries) if entries else np.full((1, *scene.depth.shape), np.inf)
        nearest = np.where(np.isfinite(entries.min(0)), entries.argmin(0), ROOM)
        # Ties at silhouettes within rounding may go either way; elsewhere the ids must agree.
        agree = nearest == scene.object_ids
        assert agree.mean() > 0.995
        for k, obj in enumerate(scene.layout.objects):
            if obj.shape != "sphere":
                continue
            shown = (scene.object_ids == k) & (scene.depth > 0)
            expected = _sphere_depth(origin, rays, obj.center, obj.size[0] / 2)
            # float32 rays: a few dozen ulps at grazing silhouette rays.
            np.testing.assert_allclose(scene.depth[shown], expected[shown], rtol=1e-5, atol=0)


# ------------------------------------------------------------------------------------------- instances


def test_masks_labels_and_boxes(scenes):
    total = 0
    for scene in scenes:
        height, width = scene.depth.shape
        n = len(scene.labels)
        total += n
        assert scene.instance_masks.shape == (n, height, width) and scene.instance_masks.dtype == bool
        assert scene.boxes.shape == (n, 4) and scene.boxes.dtype == np.float32
        assert scene.labels.dtype == np.int64
        assert (scene.instance_masks.sum(0) <= 1).all()  # disjoint
        min_pixels = max(4, int(np.ceil(SceneConfig().min_instance_area * height * width)))
        for k in range(len(scene.layout.objects)):
            area = int((scene.object_ids == k).sum())
            assert (k in scene.object_indices) == (area >= min_pixels)
        for mask, label, box, k in zip(scene.instance_masks, scene.labels, scene.boxes, scene.object_indices):
            np.testing.assert_array_equal(mask, scene.object_ids == k)
            assert SCENE_CLASS_NAMES[label] == scene.layout.objects[k].shape
            x0, y0, x1, y1 = box.astype(int)
            assert mask[y0:y1, x0:x1].sum() == mask.sum()  # the box holds the mask ...
            assert (
                mask[y0].any() and mask[y1 - 1].any() and mask[:, x0].any() and mask[:, x1 - 1].any()
            )  # tight
    assert total >= len(scenes)  # scenes do show objects
    assert scene_id2label() == {0: "box", 1: "sphere", 2: "cylinder"}


def test_objects_below_the_minimum_area_are_not_instances():
    config = SceneConfig(min_instance_area=0.02)
    dropped = 0
    for seed in SEEDS:
        scene = render_scene(seed, (72, 96), config)
        areas = np.bincount(scene.object_ids[scene.object_ids >= 0], minlength=len(scene.layout.objects))
        min_pixels = int(np.ceil(0.02 * 72 * 96))
        assert scene.object_indices.tolist() == np.flatnonzero(areas >= min_pixels).tolist()
        assert len(scene.instance_masks) == len(scene.labels) == len(scene.boxes) == len(scene.object_indices)
        dropped += int(((areas > 0) & (areas < min_pixels)).sum())
    assert dropped > 0  # visible but small objects were left out


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 8x8"):
        render_scene(0, (4, 64))
    with pytest.raises(ValueError, match="min_objects"):
        SceneConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="nyu_train"):
        write_synthetic_scenes("unused", nyu_train=-1)
    layout = sample_layout(0, SceneConfig(min_objects=0, max_objects=0, windows=False))
    assert layout.objects == () and layout.windows == ()


# -------------------------------------------------------------------------------------- on-disk layouts


def _jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    """The image as the writers store it (JPEG, quality 95), decoded again."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return np.asarray(PIL.Image.open(buffer).convert("RGB"))


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_written_layouts_load_with_the_real_loaders(tmp_path, hf_cache):
    size, seed = (48, 64), 2
    paths = write_synthetic_scenes(
        tmp_path, nyu_train=3, nyu_test=2, coco_train=2, coco_val=2, size=size, seed=seed
    )

    for split, count in (("train", 3), ("test", 2)):
        nyu = load_nyu_depth_v2(paths["nyu_root"], split, paths[f"nyu_{split}_list"], cache_dir=hf_cache)
        assert len(nyu) == count
        for index in range(count):
            scene = render_scene(scene_seed(seed, split, index), size)
            row = nyu[index]
            assert row["image"].size == (size[1], size[0])
            # uint16 millimetres, read back as metres; 0 stays 0.
            expected = np.rint(scene.depth.astype(np.float64) * 1000).astype(np.float32) / np.float32(1000)
            np.testing.assert_array_equal(row["depth"], expected)
            np.testing.assert_array_equal(np.asarray(row["image"]), _jpeg_round_trip(scene.image))

    for split, nyu_split in (("train", "train"), ("val", "test")):
        coco = load_coco_instances(
            paths[f"coco_{split}_image_dir"], paths[f"coco_{split}_annotation_file"], cache_dir=hf_cache
        )
        assert len(coco) == 2 and coco_id2label(coco) == scene_id2label()
        for index in range(2):
            scene = render_scene(scene_seed(seed, nyu_split, index), size)
            row = coco[index]
            assert row["image_id"] == index + 1 and (row["height"], row["width"]) == size
            np.testing.assert_array_equal(coco_object_masks(row), scene.instance_masks.astype(np.uint8))
            assert row["objects"]["label"] == scene.labels.tolist()
            np.testing.assert_array_equal(
                np.asarray(row["objects"]["bbox"], dtype=np.float32).reshape(-1, 4), scene.boxes
            )
        # Joint data: COCO image i and NYUv2 pair i of the matching split are the same rendered scene.
        nyu_image = PIL.Image.open(
            paths["nyu_root"]
            / ("official_splits/test" if nyu_split == "test" else "")
            / "synthetic_0000"
            / "rgb_00001.jpg"
        )
        assert (
            nyu_image.tobytes()
            == PIL.Image.open(paths[f"coco_{split}_image_dir"] / "000000000001.jpg").tobytes()
        )


def test_separate_writers_match_the_joint_writer_and_are_deterministic(tmp_path):
    # More COCO than NYUv2 scenes in train, more NYUv2 than COCO in test: both tails are rendered.
    joint = write_synthetic_scenes(
        tmp_path / "joint", nyu_train=2, nyu_test=3, coco_train=3, coco_val=1, size=32, seed=5
    )
    nyu = write_synthetic_nyu(tmp_path / "nyu", num_train=2, num_test=3, size=32, seed=5)
    coco = write_synthetic_coco(tmp_path / "coco", num_train=3, num_val=1, size=32, seed=5)
    assert _digest(joint["nyu_root"]) == _digest(nyu["root"])
    assert _digest(joint["coco_root"]) == _digest(coco["root"])
    # Rendering in worker processes writes the same files.
    again = write_synthetic_scenes(
        tmp_path / "again", nyu_train=2, nyu_test=3, coco_train=3, coco_val=1, size=32, seed=5, workers=1
    )
    assert _digest(again["nyu_root"]) == _digest(nyu["root"])
    assert _digest(again["coco_root"]) == _digest(coco["root"])
    other = write_synthetic_nyu(tmp_path / "other", num_train=2, num_test=3, size=32, seed=6)
    assert _digest(other["root"]) != _digest(nyu["root"])
    assert nyu["train_list"].read_text().splitlines() == [
        "/synthetic_0000/rgb_00001.jpg /synthetic_0000/sync_depth_00001.png",
        "/synthetic_0000/rgb_00002.jpg /synthetic_0000/sync_depth_00002.png",
    ]


def test_nyu_written_in_chunks_keeps_every_pair(tmp_path, hf_cache, monkeypatch):
    import ait_hf.data.scenes as scenes_module

    monkeypatch.setattr(scenes_module, "_NYU_PAIRS_PER_CHUNK", 2)
    paths = write_synthetic_nyu(tmp_path, num_train=5, num_test=0, size=16, seed=0)
    lines = paths["train_list"].read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"/synthetic_0000/rgb_{i:05d}.jpg" for i in range(1, 6)]
    assert not list(tmp_path.glob(".*part"))
    assert len(load_nyu_depth_v2(tmp_path, "train", paths["train_list"], cache_dir=hf_cache)) == 5


def test_command_line(tmp_path, capsys):
    main(["--out", str(tmp_path), "--nyu-train", "1", "--coco-val", "1", "--size", "24", "32", "--seed", "3"])
    printed = capsys.readouterr().out
    assert "nyu_train_list" in printed and "coco_val_annotation_file" in printed
    assert (tmp_path / "nyu_depth_v2" / "train_list.txt").is_file()
    assert (tmp_path / "coco" / "annotations" / "instances_val2017.json").is_file()
    with PIL.Image.open(tmp_path / "coco" / "val2017" / "000000000001.jpg") as image:
        assert image.size == (32, 24)
