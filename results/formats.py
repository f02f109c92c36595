"""The names of the output formats, apart from the code that writes them: the CLI lists them
(and `ablate --help` answers) without loading numpy, rich or matplotlib."""

FORMATS = ("table", "markdown", "csv", "json")  # of a report: render.write_report
PLOT_FORMATS = ("png", "pdf", "svg")  # of plots: results/plots.py, analysis/plots.py
