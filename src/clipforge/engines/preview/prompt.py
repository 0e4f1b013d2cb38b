"""Read the cues a prompt gives: camera move, speed, ambient effects, scene, colours, sounds, mood, dialogue.

Plain keyword matching on word boundaries: predictable, documented in the README, no model weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# camera moves, most specific phrase first; the first match in this order wins
CAMERA_PATTERNS: list[tuple[str, str]] = [
    ("static", r"\b(static|still|locked[- ]off|tripod|no camera (movement|motion)|fixed camera)\b"),
    ("handheld", r"\b(handheld|hand[- ]held|shaky|documentary style)\b"),
    ("orbit", r"\b(orbit(s|ing)?|arc(s|ing)? around|circles? around|revolv\w*)\b"),
    ("crane_up", r"\b(crane|jib|boom)s?( shot)?( moves?| rises?| goes?)? up\b|\b(rising|ascending) (shot|camera)\b"),
    ("crane_down", r"\b(crane|jib|boom)s?( shot)?( moves?| descends?| goes?)? down\b|\bdescending (shot|camera)\b"),
    ("crane_up", r"\b(crane|jib|boom)\b"),
    ("pull_out", r"\b(pull(s|ing)? (out|back)|zoom(s|ing)? out|dolly(ing)? (out|back)|push(es|ing)? out|"
                 r"track(s|ing)? (out|back)|widen(s|ing)?|reveal(s|ing)?)\b"),
    ("push_in", r"\b(push(es|ing)? in|zoom(s|ing)? in|dolly(ing)? in|close[- ]?in|move(s)? closer|"
                r"track(s|ing)? in|approach(es|ing)?)\b"),
    ("pan_left", r"\b(pan(s|ning)?|track(s|ing)?|truck(s|ing)?|slides?|moves?) (to the )?left\b|\bleftward\b"),
    ("pan_right", r"\b(pan(s|ning)?|track(s|ing)?|truck(s|ing)?|slides?|moves?) (to the )?right\b|\brightward\b"),
    ("tilt_up", r"\b(tilt(s|ing)?|pan(s|ning)?) up(ward)?\b"),
    ("tilt_down", r"\b(tilt(s|ing)?|pan(s|ning)?) down(ward)?\b"),
    ("push_in", r"\bzoom\b"),
    ("pan_right", r"\b(pan|panning|pans)\b"),
]

SPEED_WORDS = {
    "slow": 0.6, "slowly": 0.6, "gentle": 0.6, "gently": 0.6, "subtle": 0.5, "subtly": 0.5, "calm": 0.7,
    "fast": 1.6, "quick": 1.5, "quickly": 1.5, "rapid": 1.7, "rapidly": 1.7, "dramatic": 1.4, "swift": 1.5,
}

AMBIENT_PATTERNS: dict[str, str] = {
    "water": r"\b(water|waves?|ocean|sea|lake|river|stream|pond|beach|shore|surf|tide|ripples?|waterfall)\b",
    "clouds": r"\b(clouds?|cloudy|sky|skies|overcast|fog|mist|misty|haze)\b",
    "rain": r"\b(rain\w*|drizzle|downpour|storm\w*|showers?)\b",
    "snow": r"\b(snow\w*|blizzard|flurr\w*|winter)\b",
    "fire": r"\b(fire\w*|flames?|campfire|bonfire|candles?|burning|embers?|torch(es)?|fireplace)\b",
    "light": r"\b(light sweeps?|sun ?rays?|god ?rays|glow\w*|shimmer\w*|sparkl\w*|lens flare|sunbeams?|"
             r"light beams?|spotlights?|neon)\b",
    "leaves": r"\b(leaves|leaf|autumn|fall foliage|petals?|blossoms?)\b",
    "lightning": r"\b(lightning|thunder\w*|thunderstorm)\b",
}

SCENE_PATTERNS: list[tuple[str, str]] = [
    ("space", r"\b(space|stars?|starry|galaxy|galaxies|nebula\w*|cosmos|cosmic|planets?|universe|astronaut|"
              r"milky way|night sky)\b"),
    ("city", r"\b(city|cities|urban|street\w*|downtown|skyline|skyscrapers?|buildings?|neon|traffic|metropolis|"
             r"town)\b"),
    ("ocean", r"\b(ocean|sea|seas|waves?|beach|shore|surf|coast\w*|tide)\b"),
    ("forest", r"\b(forest\w*|woods|woodland|trees?|jungle|meadow|grass\w*|leaves|foliage|nature)\b"),
    ("sky", r"\b(sky|skies|sunset|sunrise|dawn|dusk|clouds?|horizon|golden hour|mountains?)\b"),
    ("abstract", r"\b(abstract|pattern|shapes?|fractal|psychedelic|particles?|geometric|flow\w*|liquid)\b"),
]

COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 30), "crimson": (190, 20, 40), "scarlet": (230, 36, 20), "orange": (245, 130, 30),
    "amber": (255, 170, 40), "gold": (230, 180, 50), "golden": (235, 175, 60), "yellow": (245, 220, 50),
    "green": (40, 170, 60), "emerald": (20, 150, 90), "lime": (150, 220, 50), "teal": (20, 150, 150),
    "cyan": (40, 210, 230), "turquoise": (50, 210, 200), "blue": (30, 80, 220), "azure": (40, 130, 240),
    "navy": (20, 30, 110), "indigo": (70, 40, 160), "purple": (140, 50, 190), "violet": (150, 80, 220),
    "magenta": (220, 40, 180), "pink": (245, 120, 180), "white": (240, 240, 240), "black": (15, 15, 18),
    "grey": (130, 130, 135), "gray": (130, 130, 135), "silver": (190, 195, 205), "brown": (120, 75, 40),
}

SOUND_PATTERNS: dict[str, str] = {
    "ocean": r"\b(ocean|sea|waves?|beach|shore|surf|tide|coast\w*)\b",
    "rain": r"\b(rain\w*|drizzle|downpour|storm\w*|showers?|thunder\w*)\b",
    "wind": r"\b(wind\w*|breeze|gusts?|blizzard|storm\w*|mountains?|desert|clouds?|sky)\b",
    "fire": r"\b(fire\w*|flames?|campfire|bonfire|crackl\w*|fireplace|embers?|burning)\b",
    "birds": r"\b(birds?|forest\w*|woods|woodland|trees?|jungle|meadow|spring|morning|garden|park)\b",
    "city": r"\b(city|cities|urban|street\w*|traffic|cars?|downtown|skyline|metropolis)\b",
    "crowd": r"\b(crowds?|people|market\w*|festival|party|cafe|restaurant|stadium|audience|busy)\b",
    "space": r"\b(space|stars?|galaxy|nebula\w*|cosmos|cosmic|planets?|universe|astronaut|sci-?fi)\b",
    "music": r"\b(music\w*|song|melod\w*|piano|guitar|beats?|soundtrack|score|orchestra\w*|synth\w*|dance|"
             r"dancing|jazz|techno|ambient music)\b",
    "thunder": r"\b(lightning|thunder\w*)\b",
}

MOOD_WORDS: dict[str, tuple[str, float]] = {
    # word -> (mode, tempo bpm)
    "happy": ("major", 118), "joyful": ("major", 124), "cheerful": ("major", 120), "upbeat": ("major", 128),
    "energetic": ("major", 132), "epic": ("minor", 96), "dramatic": ("minor", 90), "sad": ("minor", 66),
    "melancholy": ("minor", 64), "melancholic": ("minor", 64), "dark": ("minor", 72), "mysterious": ("minor", 76),
    "tense": ("minor", 110), "calm": ("major", 70), "peaceful": ("major", 68), "serene": ("major", 66),
    "relaxing": ("major", 70), "dreamy": ("major", 74), "romantic": ("major", 78), "eerie": ("minor", 60),
}


@dataclass(frozen=True)
class Cues:
    camera: str = "push_in"
    camera_explicit: bool = False
    speed: float = 1.0
    ambient: tuple[str, ...] = ()
    scene: str = "sky"
    colours: tuple[tuple[int, int, int], ...] = ()
    sounds: tuple[str, ...] = ()
    mood: str = "major"
    tempo: float = 92.0
    night: bool = False
    sunset: bool = False
    overcast: bool = False  # a storm or rain: a grey sky with no sun, moon or stars
    dialogue: tuple[str, ...] = field(default_factory=tuple)


def _has(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def parse_prompt(prompt: str) -> Cues:
    """The cues in `prompt` (case-insensitive); defaults give a gentle push-in over a sky."""
    raw = prompt or ""
    dialogue = tuple(d.strip() for d in re.findall(r"[\"“”]([^\"“”]{2,300})[\"“”]", raw) if d.strip())
    text = re.sub(r"[\"“”][^\"“”]*[\"“”]", " ", raw).lower()  # quoted speech is not a visual cue
    camera, explicit = "push_in", False
    for name, pattern in CAMERA_PATTERNS:
        if _has(pattern, text):
            camera, explicit = name, True
            break
    speed = 1.0
    for word, factor in SPEED_WORDS.items():
        if _has(rf"\b{word}\b", text):
            speed = factor
            break
    ambient = tuple(name for name, pattern in AMBIENT_PATTERNS.items() if _has(pattern, text))
    scene = next((name for name, pattern in SCENE_PATTERNS if _has(pattern, text)), "sky")
    colours = tuple(rgb for _, word, rgb in sorted(
        (m.start(), w, rgb) for w, rgb in COLOUR_WORDS.items() for m in re.finditer(rf"\b{w}\b", text)))
    sounds = tuple(name for name, pattern in SOUND_PATTERNS.items() if _has(pattern, text))
    mood, tempo = "major", 92.0
    for word, (mode, bpm) in MOOD_WORDS.items():
        if _has(rf"\b{word}\b", text):
            mood, tempo = mode, bpm
            break
    if _has(r"\b(fast|quick|rapid|energetic)\b", text):
        tempo *= 1.15
    elif _has(r"\b(slow|slowly|gentle|calm)\b", text):
        tempo *= 0.88
    night = _has(r"\b(night\w*|midnight|dark|moonlit|moon|evening|neon)\b", text)
    sunset = _has(r"\b(sunset|sunrise|dusk|dawn|golden hour)\b", text)
    overcast = bool({"rain", "lightning"} & set(ambient)) or _has(r"\b(overcast|storm\w*|gloomy|grey sky)\b", text)
    return Cues(camera, explicit, speed, ambient, scene, colours, sounds, mood, float(tempo), night, sunset,
                overcast, dialogue)
