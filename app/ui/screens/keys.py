"""The main screen's keys: one binding per action, and one per tab of the side column.

The footer, the palette (app.ui.palette) and the tab strip all read them from here.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

# Every tab of the side column has a key (the palette lists them too), in strip order.
TAB_KEYS = (
    ("p", "tab-lab", "Lab"),
    ("e", "tab-events", "Events"),
    ("h", "tab-other", "Other states"),
    ("u", "tab-udp", "UDP"),
    ("i", "tab-interfaces", "Interfaces"),
    ("s", "tab-scan", "Scan"),
    ("b", "tab-bytes", "Bytes"),
    ("m", "tab-machine", "TCP states"),
    ("w", "tab-backlog", "Backlog"),
)
MAIN_BINDINGS: list[BindingType] = [
    *(
        Binding(key, action, description, id=action.rpartition(".")[2], tooltip=tooltip)
        for key, action, description, tooltip in (
            ("q", "quit", "Quit", "Quit (asks about running lab processes)"),
            ("l", "launch", "Launch", "Start a lab server, client or any command"),
            ("k", "kill", "Kill", "SIGTERM the selected process or the socket's owner"),
            ("K", "kill9", "Kill -9", "SIGKILL, like kill -9 PID"),
            ("r", "restart", "Restart", "Stop and start the selected lab process"),
            ("X", "kill_all", "Kill all", "SIGTERM every lab process"),
            ("c", "close_connection", "Close", "End the selected TCP connection, as ss -K (root)"),
            ("slash", "filter", "Filter", "Show only rows containing some text"),
            ("space", "freeze", "Freeze", "Hold a still frame for the class"),
            ("plus,equals_sign", "faster", "Faster", "Poll more often"),
            ("minus", "slower", "Slower", "Poll less often"),
            ("a", "lab_only", "Lab only", "Only sockets of lab processes, or all"),
            ("f", "family", "IPv4/6", "Cycle IPv4 and IPv6, IPv4 only, IPv6 only"),
            ("n", "numeric", "Numeric", "Hide or show service names"),
            ("o", "sort", "Sort", "Sort the focused table by its next column"),
            ("t", "app.toggle_theme", "Theme", "Switch the default and projector themes"),
            ("O", "scenario", "Scenario", "Load a scenario file"),
            ("L", "lesson", "Lesson", "Open a lesson file, or hide and show the lesson"),
            # While a lesson is shown n and p are its steps' (Numeric and the Lab tab
            # step aside: MainScreen.check_action), and come back when it is hidden.
            ("n", "lesson_next", "Next step", "The lesson's next step: does what it says"),
            ("p", "lesson_previous", "Step back", "Show the lesson's previous step again"),
            ("z", "zoom", "Zoom", "Give the side column the whole screen, or not"),
            ("ctrl+s", "app.save_screen", "Screenshot", "Save an SVG screenshot for a handout"),
        )
    ),
    # Not in the footer: the tab strip shows each tab's key on the tab itself.
    *(
        Binding(key, f"tab('{tab}')", title, id=tab, tooltip=f"Show the {title} tab", show=False)
        for key, tab, title in TAB_KEYS
    ),
]

# The keys that act on the live machine, or on the poller: hidden in a replay of a record
# (MainScreen(live=False)), whose pause and speed take the place of freeze and + / -.
LIVE_ONLY = frozenset(
    {
        "launch",
        "kill",
        "kill9",
        "restart",
        "kill_all",
        "close_connection",
        "scenario",
        "lesson",
        "freeze",
        "faster",
        "slower",
    }
)

# The keys whose footer entry greys out when they cannot act (check_action).
ACTING = ("kill", "restart", "kill_all", "close_connection")
