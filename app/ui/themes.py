"""The projector theme: black, white, one bright accent, nothing dim."""

from __future__ import annotations

from textual.theme import BUILTIN_THEMES, Theme

DEFAULT_THEME = "textual-dark"
# The Okabe-Ito colours the dashboard gives meaning (told apart with red/green blindness;
# a sign or a word always goes with them, never colour alone).
SKY_BLUE = "#56B4E9"  # new, open, success
ORANGE = "#E69F00"  # gone, closed, warning
REDDISH_PURPLE = "#CC79A7"  # filtered
PROJECTOR = Theme(
    name="projector",
    primary="#FFD400",  # one bright accent: yellow reads on every projector
    secondary="#FFFFFF",
    accent="#FFD400",
    warning=ORANGE,
    error="#FF6E6E",
    success=SKY_BLUE,  # not green: red/green blindness
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    boost="#222222",
    dark=True,
    luminosity_spread=0.1,
    text_alpha=1.0,  # no dim text
    variables={
        "block-cursor-background": "#FFD400",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
        "block-cursor-blurred-background": "#FFD400 70%",
        "block-cursor-blurred-foreground": "#000000",
        "block-cursor-blurred-text-style": "bold",
        "footer-key-foreground": "#FFD400",
        "footer-description-foreground": "#FFFFFF",
        "border": "#FFFFFF",
        "border-blurred": "#BBBBBB",
        "text-muted": "#FFFFFF",
        "scrollbar": "#888888",
    },
)
THEMES = {**BUILTIN_THEMES, "projector": PROJECTOR}


def theme_names() -> list[str]:
    return sorted(THEMES)
