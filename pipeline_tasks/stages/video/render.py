"""The synthetic cartoon: a seeded plan (scenes, backgrounds, characters, motion, transitions) and a
frame renderer that returns the image together with exact per-character masks.

Everything is a pure function of the plan, and the plan a pure function of the config and seed, so
the same config always renders the same pixels. Frames are rendered one at a time (the caller
streams them to the encoder), so memory does not grow with duration.

Masks are exact: characters are drawn without anti-aliasing, each into its own sprite mask, and
composited back to front into a label map, so a character's mask is exactly the pixels that show it
(occlusion by characters drawn later and clipping by the frame edge already applied).
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import cv2
import numpy as np

from . import rle

TRANSITIONS = ("cut", "fade", "dissolve", "mixed")
CHARACTER_NAMES = ("ada", "bo", "cy", "dot", "eli", "fay", "gus", "hal", "ivy", "jo", "kit", "lu")
BODY_SHAPES = ("ellipse", "rect", "triangle", "pear")
HEAD_SHAPES = ("circle", "square", "oval")
FLASH_FRAMES = 2                  # a flash: this many near-white frames inside a shot
FLASH_STRENGTH = 0.75             # share of white in a flash frame


@dataclass(frozen=True)
class Character:
    id: int
    name: str
    body_shape: str
    head_shape: str
    body_color: tuple[int, int, int]
    head_color: tuple[int, int, int]
    limb_color: tuple[int, int, int]
    height_frac: float            # nominal height as a fraction of the frame height
    width_ratio: float            # body width / body height


@dataclass(frozen=True)
class Actor:
    """One character's appearance in one scene."""

    character: int
    z: int                        # drawing order in the scene: higher is in front
    x0: float                     # centre x at scene frame 0 (pixels, in frame coordinates)
    y0: float                     # bottom y at scene frame 0
    vx: float                     # pixels per frame
    vy: float
    bob_amp: float
    bob_period: float
    scale: float
    talk_period: int


@dataclass
class Scene:
    index: int
    start_frame: int              # first frame (inclusive)
    end_frame: int                # end (exclusive)
    hue: float
    background_kind: str
    pan_speed: float              # background pixels per frame (0: static camera)
    actors: list[Actor]
    transition_in: str            # how this scene begins: "start", "cut", "fade", "dissolve"
    seed: int
    place: int = -1               # the scene whose place (background) this shot shows; -1: its own
    background_width: int = 0     # width of the place's background (0: frame width + the pan)
    camera_start: float = -1.0    # left edge of the view in the background at scene frame -20 (-1: auto)
    zoom: tuple[float, float] = (1.0, 1.0)   # camera zoom at the scene's first and last frame


@dataclass
class Transition:
    kind: str                     # "fade" or "dissolve"
    start_frame: int              # first blended frame (inclusive)
    end_frame: int                # end (exclusive)
    from_scene: int
    to_scene: int


@dataclass
class Plan:
    width: int
    height: int
    fps: Fraction
    frame_count: int
    seed: int
    characters: list[Character]
    scenes: list[Scene]
    transitions: list[Transition] = field(default_factory=list)
    flashes: list[int] = field(default_factory=list)   # first frames of the flashes (FLASH_FRAMES long)

    @property
    def cut_frames(self) -> list[int]:
        """First frames of the scenes that begin with a hard cut."""
        return [s.start_frame for s in self.scenes if s.transition_in == "cut"]

    @property
    def scene_starts(self) -> list[int]:
        return [s.start_frame for s in self.scenes[1:]]

    def scene_at(self, frame: int) -> Scene:
        for scene in reversed(self.scenes):
            if scene.start_frame <= frame:
                return scene
        return self.scenes[0]

    def flash_at(self, frame: int) -> bool:
        return any(f <= frame < f + FLASH_FRAMES for f in self.flashes)

    def transition_at(self, frame: int) -> Transition | None:
        for tr in self.transitions:
            if tr.start_frame <= frame < tr.end_frame:
                return tr
        return None


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def make_characters(k: int, rng: np.random.Generator) -> list[Character]:
    chars = []
    hue0 = rng.random()
    for i in range(k):
        hue = (hue0 + i * 0.618034) % 1.0
        chars.append(Character(
            id=i, name=CHARACTER_NAMES[i % len(CHARACTER_NAMES)] + ("" if i < len(CHARACTER_NAMES) else str(i)),
            body_shape=BODY_SHAPES[i % len(BODY_SHAPES)],
            head_shape=HEAD_SHAPES[(i // len(BODY_SHAPES) + i) % len(HEAD_SHAPES)],
            body_color=_rgb(hue, 0.75, 0.85),
            head_color=_rgb(hue + 0.08 + 0.1 * rng.random(), 0.35, 0.97),
            limb_color=_rgb(hue + 0.5, 0.6, 0.45),
            height_frac=float(0.38 + 0.17 * rng.random()),
            width_ratio=float(0.45 + 0.3 * rng.random()),
        ))
    return chars


def make_plan(*, width: int, height: int, fps: float | Fraction, duration: float, num_scenes: int,
              num_characters: int, seed: int, transition: str = "cut", transition_frames: int = 12,
              pan: bool = True, cast_seed: int | None = None, zoom: bool = False, revisit: float = 0.0,
              flashes: int = 0, shared_colour: bool = False, in_front: float = 0.0) -> Plan:
    """The whole video, decided up front from the seed (cheap: no pixels). With `cast_seed` the
    characters come from that seed alone: videos with one cast seed share their characters.

    What real cartoons add (all off by default; they draw from their own random stream, so a
    video without them is the same as before): `zoom` (about a third of the scenes zoom in or out),
    `revisit` (the share of cuts that go to another shot of the previous scene's place: same
    background, another part of it seen from another distance), `flashes` (that many two-frame near-white flashes inside
    shots), `shared_colour` (the second character wears the first one's body colour), `in_front`
    (the share of scenes of two or more characters in which the second walks along with the first,
    standing in front of it)."""
    rng = np.random.default_rng(seed)
    fps = Fraction(fps).limit_denominator(1001)
    frame_count = int(round(duration * fps))
    characters = make_characters(num_characters, rng if cast_seed is None else np.random.default_rng(cast_seed))

    # scene lengths: random weights, each at least half the average
    weights = 0.6 + 0.8 * rng.random(num_scenes)
    avg = frame_count / num_scenes
    lengths = np.maximum(np.floor(weights / weights.sum() * frame_count), max(1, int(avg * 0.5))).astype(int)
    lengths[-1] = frame_count - int(lengths[:-1].sum())
    while lengths[-1] < max(1, int(avg * 0.5)):  # rebalance if the tail got too short
        j = int(np.argmax(lengths[:-1]))
        lengths[j] -= 1
        lengths[-1] += 1
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(int)

    # cast: walk a shuffled cycle of characters so each appears in several scenes
    order = list(rng.permutation(num_characters))
    pos = 0
    hue0 = rng.random()
    scenes: list[Scene] = []
    transitions: list[Transition] = []
    for s in range(num_scenes):
        n = int(min(num_characters, 1 + rng.integers(0, 3)))
        cast: list[int] = []
        while len(cast) < n:
            c = int(order[pos % num_characters])
            pos += 1
            if pos % num_characters == 0:
                order = list(rng.permutation(num_characters))
            if c not in cast:
                cast.append(c)
        length = int(lengths[s])
        actors = []
        for z, c in enumerate(cast):
            speed = (0.4 + 2.2 * rng.random()) * width / 640.0
            direction = 1 if rng.random() < 0.5 else -1
            # start so that the character crosses the frame; some start partly off-screen
            x0 = float(rng.uniform(-0.15, 1.15) * width)
            if direction > 0 and x0 > 0.7 * width:
                direction = -1
            elif direction < 0 and x0 < 0.3 * width:
                direction = 1
            if z > 0 and rng.random() < 0.6:   # walk towards an earlier actor: overlaps happen
                x0 = actors[0].x0 + direction * -1 * float(rng.uniform(0.2, 0.5)) * width
            actors.append(Actor(
                character=c, z=z, x0=x0, y0=float(height * rng.uniform(0.78, 1.02)),
                vx=direction * speed, vy=float(rng.uniform(-0.15, 0.15)) * height / 360.0,
                bob_amp=float(rng.uniform(0, 0.02) * height), bob_period=float(rng.uniform(8, 24)),
                scale=float(rng.uniform(0.85, 1.15)), talk_period=int(rng.integers(4, 10))))
        kind = "start" if s == 0 else ("cut" if transition == "cut" else transition)
        if transition == "mixed" and s > 0:
            kind = ("cut", "cut", "fade", "dissolve")[int(rng.integers(0, 4))]
        pan_speed = 0.0
        if pan and rng.random() < 0.5:
            pan_speed = float(rng.uniform(0.3, 1.5)) * width / 640.0 * (1 if rng.random() < 0.5 else -1)
            pan_speed = float(np.clip(pan_speed, -width / max(length, 1), width / max(length, 1)))
        scenes.append(Scene(index=s, start_frame=int(starts[s]), end_frame=int(starts[s] + length),
                            hue=(hue0 + s * 0.381966 + 0.05 * rng.random()) % 1.0,
                            background_kind=("vertical", "horizontal", "diagonal", "radial")[int(rng.integers(0, 4))],
                            pan_speed=pan_speed, actors=actors, transition_in=kind,
                            seed=int(rng.integers(0, 2**31 - 1))))
        if kind in ("fade", "dissolve"):
            half = max(1, min(transition_frames, int(lengths[s - 1]) // 3, length // 3) // 2)
            transitions.append(Transition(kind=kind, start_frame=int(starts[s]) - half,
                                          end_frame=int(starts[s]) + half, from_scene=s - 1, to_scene=s))
    plan = Plan(width=width, height=height, fps=fps, frame_count=frame_count, seed=seed,
                characters=characters, scenes=scenes, transitions=transitions)
    _add_cartoon_features(plan, np.random.default_rng([seed, 0xCA7]), zoom=zoom, revisit=revisit,
                          flashes=flashes, shared_colour=shared_colour)
    if in_front > 0:
        _add_pairs_in_front(plan, np.random.default_rng([seed, 0xF20]), in_front)
    return plan


def _pan_extent(scene: Scene) -> int:
    return int(math.ceil(abs(scene.pan_speed) * (scene.end_frame - scene.start_frame + 40))) + 2


def _add_cartoon_features(plan: Plan, rng: np.random.Generator, *, zoom: bool, revisit: float, flashes: int,
                          shared_colour: bool) -> None:
    if shared_colour and len(plan.characters) >= 2:
        plan.characters[1] = replace(plan.characters[1], body_color=plan.characters[0].body_color)
    if revisit > 0:
        _add_revisits(plan, rng, revisit)
    if zoom:
        for scene in plan.scenes:
            if rng.random() < 1 / 3:
                z = float(rng.uniform(1.2, 1.5))
                scene.zoom = (1.0, z) if rng.random() < 0.5 else (z, 1.0)
    for scene in plan.scenes[1:]:
        # another shot of the place: another part of it and another camera distance
        if scene.place >= 0:
            before = plan.scenes[scene.index - 1].zoom[1]
            if abs(scene.zoom[0] - before) < 0.25:
                step = float(rng.uniform(0.3, 0.5))
                z = before + step if before + step <= 1.7 else max(1.0, before - step)
                scene.zoom = (z, z)
    if flashes:
        plan.flashes = _flash_starts(plan, rng, flashes)


def _add_pairs_in_front(plan: Plan, rng: np.random.Generator, share: float) -> None:
    """In `share` of the scenes with two or more characters, the second walks along with the first,
    in front of it: nearer the camera (its feet lower in the frame, drawn over it), a little to one
    side (up to an eighth of the frame height), so the one behind shows around the one in front
    (its head above or beside, its arms or side beyond) and the two make one figure."""
    H = plan.height
    for scene in plan.scenes:
        if len(scene.actors) < 2 or rng.random() >= share:
            continue
        back = scene.actors[0]
        front = scene.actors[1]
        scene.actors[1] = replace(
            front, x0=back.x0 + float(rng.uniform(-0.12, 0.12)) * H, y0=back.y0 + float(rng.uniform(0.03, 0.1)) * H,
            vx=back.vx, vy=back.vy, bob_amp=0.0)


def _add_revisits(plan: Plan, rng: np.random.Generator, revisit: float) -> None:
    """A shot returns to the previous shot's place with probability `revisit`: the place gets a
    wide background and each of its shots its own part of it."""
    W = plan.width
    for s in range(1, len(plan.scenes)):
        if plan.scenes[s].transition_in == "cut" and rng.random() < revisit:
            prev = plan.scenes[s - 1]
            plan.scenes[s].place = prev.place if prev.place >= 0 else prev.index
    for scene in plan.scenes:
        if scene.place >= 0 or not any(o.place == scene.index for o in plan.scenes):
            continue
        shots = [scene] + [o for o in plan.scenes if o.place == scene.index]
        width = 2 * W + max(_pan_extent(o) for o in shots)
        last = None
        for o in shots:
            o.background_width = width
            room = width - W - _pan_extent(o)
            start = float(rng.uniform(0, room))
            if last is not None and abs(start - last) < 0.4 * W:   # another part of the place
                start = float((last + 0.4 * W + rng.uniform(0, 0.6 * W)) % max(room, 1.0))
            o.camera_start = start
            last = start
            if o is not scene:
                o.hue, o.background_kind, o.seed = scene.hue, scene.background_kind, scene.seed


def _flash_starts(plan: Plan, rng: np.random.Generator, count: int) -> list[int]:
    """`count` flash starts inside shots: 8 frames or more from scene boundaries and transitions,
    more than 12 frames apart."""
    busy = set()
    for scene in plan.scenes[1:]:
        busy.update(range(scene.start_frame - 8, scene.start_frame + 8))
    for tr in plan.transitions:
        busy.update(range(tr.start_frame - 8, tr.end_frame + 8))
    free = [f for f in range(8, plan.frame_count - 8 - FLASH_FRAMES) if f not in busy]
    chosen: list[int] = []
    for f in rng.permutation(free):
        if len(chosen) == count:
            break
        if all(abs(int(f) - c) > 12 for c in chosen):
            chosen.append(int(f))
    return sorted(chosen)


# -- backgrounds -----------------------------------------------------------------------------------

def render_background(scene: Scene, width: int, height: int) -> np.ndarray:
    """The scene's background, wide enough for its pan (RGB uint8, H x (W + pan range) x 3)."""
    rng = np.random.default_rng(scene.seed)
    bw = scene.background_width or width + _pan_extent(scene)
    top = np.array(_rgb(scene.hue, 0.55, 0.95), np.float32)
    bottom = np.array(_rgb(scene.hue + 0.12, 0.8, 0.55), np.float32)
    yy, xx = np.mgrid[0:height, 0:bw].astype(np.float32)
    if scene.background_kind == "vertical":
        t = yy / height
    elif scene.background_kind == "horizontal":
        t = xx / bw
    elif scene.background_kind == "diagonal":
        t = (xx / bw + yy / height) / 2
    else:
        cx, cy = bw * rng.uniform(0.3, 0.7), height * rng.uniform(0.2, 0.5)
        t = np.clip(np.hypot(xx - cx, yy - cy) / (0.8 * max(height, width)), 0, 1)
    img = top[None, None, :] * (1 - t[..., None]) + bottom[None, None, :] * t[..., None]
    # texture: smooth low-frequency noise plus fine grain
    coarse = rng.normal(0, 1, (max(2, height // 40), max(2, bw // 40))).astype(np.float32)
    img += cv2.resize(coarse, (bw, height), interpolation=cv2.INTER_CUBIC)[..., None] * 10
    img += rng.normal(0, 3, (height, bw, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    # ground band and props
    ground_y = int(height * rng.uniform(0.7, 0.82))
    ground = _rgb(scene.hue + 0.3, 0.5, 0.5)
    cv2.rectangle(img, (0, ground_y), (bw, height), ground, -1)
    for _ in range(int(rng.integers(3, 8))):
        kind = int(rng.integers(0, 4))
        x = int(rng.uniform(0, bw))
        color = _rgb(scene.hue + rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
        s = int(height * rng.uniform(0.08, 0.22))
        if kind == 0:     # tree
            cv2.rectangle(img, (x - s // 8, ground_y - s), (x + s // 8, ground_y), (110, 70, 30), -1)
            cv2.circle(img, (x, ground_y - s), int(s * 0.6), color, -1, cv2.LINE_AA)
        elif kind == 1:   # house
            cv2.rectangle(img, (x - s // 2, ground_y - s), (x + s // 2, ground_y), color, -1)
            roof = np.array([[x - s // 2 - 4, ground_y - s], [x + s // 2 + 4, ground_y - s],
                             [x, ground_y - int(1.6 * s)]])
            cv2.fillPoly(img, [roof], _rgb(scene.hue + 0.5, 0.6, 0.5), cv2.LINE_AA)
            cv2.rectangle(img, (x - s // 8, ground_y - s // 3), (x + s // 8, ground_y), (60, 40, 30), -1)
        elif kind == 2:   # cloud / sun
            y = int(height * rng.uniform(0.05, 0.35))
            cv2.ellipse(img, (x, y), (s, s // 2), 0, 0, 360, (250, 250, 245), -1, cv2.LINE_AA)
            cv2.circle(img, (x + s // 2, y - s // 4), s // 3, (250, 250, 245), -1, cv2.LINE_AA)
        else:             # stripes / fence
            for k in range(6):
                xx0 = x + k * s // 3
                cv2.rectangle(img, (xx0, ground_y - s // 2), (xx0 + s // 10, ground_y), color, -1)
    return img


# -- characters ------------------------------------------------------------------------------------

@dataclass
class Sprite:
    rgb: np.ndarray               # h x w x 3 uint8
    mask: np.ndarray              # h x w bool
    anchor_x: int                 # centre x within the sprite
    pixels: int


def render_sprite(ch: Character, height_px: int, facing: int, mouth_open: bool, blink: bool) -> Sprite:
    """A character drawn into its own canvas: body, legs, arms, head with eyes and mouth.

    Drawn without anti-aliasing so the mask matches the drawn pixels exactly.
    """
    H = max(24, int(height_px))
    head_r = int(H * 0.17)
    body_h = int(H * 0.45)
    body_w = max(6, int(body_h * ch.width_ratio))
    W = max(body_w + 2 * int(H * 0.18), 2 * head_r + 4) + 4
    cx = W // 2
    rgb = np.zeros((H, W, 3), np.uint8)
    mask = np.zeros((H, W), np.uint8)
    line = cv2.LINE_8

    body_top = 2 * head_r
    body_bot = body_top + body_h
    # legs
    lw = max(2, body_w // 5)
    for dx in (-body_w // 4, body_w // 4):
        for img, col in ((rgb, ch.limb_color), (mask, 255)):
            cv2.rectangle(img, (cx + dx - lw // 2, body_bot - 2), (cx + dx + lw // 2, H - 1), col, -1, line)
    # arms (one raised toward the facing side)
    aw = max(2, body_w // 7)
    sh_y = body_top + body_h // 5
    for side in (-1, 1):
        hand = (cx + side * (body_w // 2 + int(H * 0.14)), sh_y + (int(H * 0.18) if side != facing else -int(H * 0.04)))
        for img, col in ((rgb, ch.limb_color), (mask, 255)):
            cv2.line(img, (cx + side * body_w // 3, sh_y), hand, col, aw, line)
    # body
    for img, col in ((rgb, ch.body_color), (mask, 255)):
        if ch.body_shape == "ellipse":
            cv2.ellipse(img, (cx, (body_top + body_bot) // 2), (body_w // 2, body_h // 2), 0, 0, 360, col, -1, line)
        elif ch.body_shape == "rect":
            cv2.rectangle(img, (cx - body_w // 2, body_top), (cx + body_w // 2, body_bot), col, -1, line)
        elif ch.body_shape == "triangle":
            pts = np.array([[cx, body_top], [cx - body_w // 2 - 2, body_bot], [cx + body_w // 2 + 2, body_bot]])
            cv2.fillPoly(img, [pts], col, line)
        else:  # pear: small top ellipse + large bottom ellipse
            cv2.ellipse(img, (cx, body_top + body_h // 4), (body_w // 3, body_h // 4), 0, 0, 360, col, -1, line)
            cv2.ellipse(img, (cx, body_top + 5 * body_h // 8), (body_w // 2, 3 * body_h // 8), 0, 0, 360, col, -1, line)
    # belly patch (colour only)
    cv2.ellipse(rgb, (cx, body_top + body_h // 2), (max(2, body_w // 5), max(2, body_h // 5)), 0, 0, 360,
                tuple(min(255, c + 50) for c in ch.body_color), -1, line)
    # head
    hc = (cx + facing * head_r // 6, head_r)
    for img, col in ((rgb, ch.head_color), (mask, 255)):
        if ch.head_shape == "circle":
            cv2.circle(img, hc, head_r, col, -1, line)
        elif ch.head_shape == "square":
            cv2.rectangle(img, (hc[0] - head_r, 1), (hc[0] + head_r, 2 * head_r), col, -1, line)
        else:
            cv2.ellipse(img, hc, (int(head_r * 0.8), head_r), 0, 0, 360, col, -1, line)
    # face: eyes (white + pupil looking to the facing side) and mouth; colour only, inside the head
    er = max(2, head_r // 4)
    for side in (-1, 1):
        ec = (hc[0] + side * head_r // 3 + facing * head_r // 8, hc[1] - head_r // 5)
        if blink:
            cv2.line(rgb, (ec[0] - er, ec[1]), (ec[0] + er, ec[1]), (20, 20, 20), max(1, er // 2), line)
        else:
            cv2.circle(rgb, ec, er, (255, 255, 255), -1, line)
            cv2.circle(rgb, (ec[0] + facing * er // 2, ec[1]), max(1, er // 2), (15, 15, 15), -1, line)
    mc = (hc[0] + facing * head_r // 6, hc[1] + head_r // 2)
    if mouth_open:
        cv2.ellipse(rgb, mc, (max(2, head_r // 3), max(2, head_r // 5)), 0, 0, 360, (120, 20, 30), -1, line)
    else:
        cv2.line(rgb, (mc[0] - head_r // 3, mc[1]), (mc[0] + head_r // 3, mc[1]), (60, 20, 20),
                 max(1, head_r // 10), line)
    m = mask > 0
    rgb[~m] = 0
    return Sprite(rgb=rgb, mask=m, anchor_x=cx, pixels=int(m.sum()))


@dataclass
class VisibleCharacter:
    character: int
    z: int
    bbox: list[int]               # [x, y, w, h] of the visible pixels
    counts: list[int]             # RLE of the mask inside bbox (see rle.py)
    visible_fraction: float       # visible pixels / sprite pixels (occlusion and clipping)
    area: int


class SceneRenderer:
    """Renders the frames of one scene (background and sprites cached for the scene only)."""

    def __init__(self, plan: Plan, scene: Scene):
        self.plan = plan
        self.scene = scene
        self.background = render_background(scene, plan.width, plan.height)
        self._sprites: dict[tuple[int, int, bool, bool], Sprite] = {}

    def _sprite(self, actor: Actor, facing: int, mouth: bool, blink: bool) -> Sprite:
        key = (actor.character, facing, mouth, blink)
        if key not in self._sprites:
            ch = self.plan.characters[actor.character]
            height = ch.height_frac * actor.scale * self.plan.height
            self._sprites[key] = render_sprite(ch, height, facing, mouth, blink)
        return self._sprites[key]

    def background_view(self, frame_index: int) -> np.ndarray:
        """The part of the (panning) background the camera sees at `frame_index` (a view)."""
        W = self.plan.width
        t = frame_index - self.scene.start_frame
        pan_range = self.background.shape[1] - W
        if self.scene.camera_start >= 0:
            off = int(round(self.scene.camera_start + abs(self.scene.pan_speed) * (t + 20)))
            if self.scene.pan_speed < 0:
                off = int(round(self.scene.camera_start + _pan_extent(self.scene) - 2
                                - abs(self.scene.pan_speed) * (t + 20)))
        elif self.scene.pan_speed >= 0:
            off = int(round(self.scene.pan_speed * (t + 20)))
        else:
            off = pan_range - int(round(-self.scene.pan_speed * (t + 20)))
        off = int(np.clip(off, 0, pan_range))
        return self.background[:, off:off + W]

    def render(self, frame_index: int) -> tuple[np.ndarray, list[VisibleCharacter]]:
        """The RGB frame and the visible characters for absolute frame `frame_index`."""
        W, H = self.plan.width, self.plan.height
        t = frame_index - self.scene.start_frame           # may be negative inside a transition
        frame = self.background_view(frame_index).copy()
        labels = np.zeros((H, W), np.uint8)
        placed = []
        for actor in sorted(self.scene.actors, key=lambda a: a.z):
            facing = 1 if actor.vx >= 0 else -1
            mouth = (t // actor.talk_period) % 2 == 1
            blink = (t + 7 * actor.character) % 45 < 3
            sp = self._sprite(actor, facing, mouth, blink)
            cx = actor.x0 + actor.vx * t
            bottom = actor.y0 + actor.vy * t + actor.bob_amp * math.sin(2 * math.pi * t / actor.bob_period)
            x = int(round(cx)) - sp.anchor_x
            y = int(round(bottom)) - sp.rgb.shape[0]
            h, w = sp.mask.shape
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            if x0 >= x1 or y0 >= y1:
                placed.append((actor, sp, None))
                continue
            sm = sp.mask[y0 - y:y1 - y, x0 - x:x1 - x]
            region = frame[y0:y1, x0:x1]
            region[sm] = sp.rgb[y0 - y:y1 - y, x0 - x:x1 - x][sm]
            labels[y0:y1, x0:x1][sm] = actor.z + 1
            placed.append((actor, sp, (x0, y0, x1, y1)))
        z = self.zoom_at(frame_index)
        if z != 1.0:
            frame, labels = zoom_view(frame, z), zoom_view(labels, z)
            placed = [(actor, sp, None if box is None else (0, 0, W, H)) for actor, sp, box in placed]
        visible = []
        for actor, sp, box in placed:
            if box is None:
                continue
            x0, y0, x1, y1 = box
            m = labels[y0:y1, x0:x1] == actor.z + 1
            rows = np.flatnonzero(m.any(axis=1))
            if rows.size == 0:
                continue  # fully hidden behind characters in front
            cols = np.flatnonzero(m.any(axis=0))
            r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            tight = m[r0:r1, c0:c1]
            area = int(tight.sum())
            visible.append(VisibleCharacter(
                character=actor.character, z=actor.z, bbox=[x0 + c0, y0 + r0, c1 - c0, r1 - r0],
                counts=rle.encode(tight), visible_fraction=round(area / (sp.pixels * z * z), 4), area=area))
        return frame, visible

    def zoom_at(self, frame_index: int) -> float:
        z0, z1 = self.scene.zoom
        if z0 == z1:
            return z0
        length = max(1, self.scene.end_frame - self.scene.start_frame - 1)
        t = min(max(frame_index - self.scene.start_frame, 0), length) / length
        return z0 + (z1 - z0) * t


def zoom_view(img: np.ndarray, z: float) -> np.ndarray:
    """The camera zoomed by `z` about the frame centre (nearest neighbour: masks stay exact)."""
    H, W = img.shape[:2]
    cw, ch = W / z, H / z
    xs = np.clip(((np.arange(W) + 0.5) / W * cw + (W - cw) / 2).astype(int), 0, W - 1)
    ys = np.clip(((np.arange(H) + 0.5) / H * ch + (H - ch) / 2).astype(int), 0, H - 1)
    return np.ascontiguousarray(img[ys][:, xs])


def blend(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * a + alpha * b, rounded, uint8 (b may be None for black)."""
    out = a.astype(np.float32) * (1.0 - alpha)
    if b is not None:
        out += b.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def iter_frames(plan: Plan):
    """Yield ``(frame_index, rgb, characters)`` for every frame, streaming.

    `characters` is a list of dicts (the ground-truth entries): id, name, scene, z, opacity, bbox,
    mask (RLE counts inside bbox), area, visible_fraction. Inside a fade the one visible scene's
    characters have opacity < 1; inside a dissolve both scenes' characters are listed, each with its
    layer's opacity (layers are blended, they do not occlude each other).
    """
    renderers: dict[int, SceneRenderer] = {}

    def renderer(s: int) -> SceneRenderer:
        if s not in renderers:
            renderers[s] = SceneRenderer(plan, plan.scenes[s])
        return renderers[s]

    def entries(scene_index: int, visible: list[VisibleCharacter], opacity: float) -> list[dict]:
        out = []
        for v in visible:
            out.append({"id": v.character, "name": plan.characters[v.character].name, "scene": scene_index,
                        "z": v.z, "opacity": round(opacity, 4), "bbox": v.bbox, "mask": v.counts,
                        "area": v.area, "visible_fraction": v.visible_fraction})
        return out

    for f in range(plan.frame_count):
        scene = plan.scene_at(f)
        # drop renderers of scenes we are done with (memory stays flat)
        for s in [s for s in renderers
                  if s < scene.index - 1 or (s == scene.index - 1 and plan.transition_at(f) is None)]:
            del renderers[s]
        tr = plan.transition_at(f)
        if tr is None:
            img, vis = renderer(scene.index).render(f)
            if plan.flash_at(f):
                yield f, blend(img, np.full_like(img, 255), FLASH_STRENGTH), entries(scene.index, vis,
                                                                                      1.0 - FLASH_STRENGTH)
            else:
                yield f, img, entries(scene.index, vis, 1.0)
            continue
        span = tr.end_frame - tr.start_frame
        boundary = plan.scenes[tr.to_scene].start_frame
        if tr.kind == "fade":
            half = boundary - tr.start_frame
            if f < boundary:
                img, vis = renderer(tr.from_scene).render(f)
                alpha = 1.0 - (f - tr.start_frame + 1) / (half + 1)
                sid = tr.from_scene
            else:
                img, vis = renderer(tr.to_scene).render(f)
                alpha = (f - boundary + 1) / (tr.end_frame - boundary + 1)
                sid = tr.to_scene
            yield f, blend(img, None, 1.0 - alpha), entries(sid, vis, alpha)
        else:
            a = (f - tr.start_frame + 1) / (span + 1)
            img_a, vis_a = renderer(tr.from_scene).render(f)
            img_b, vis_b = renderer(tr.to_scene).render(f)
            yield f, blend(img_a, img_b, a), entries(tr.from_scene, vis_a, 1.0 - a) + entries(tr.to_scene, vis_b, a)
