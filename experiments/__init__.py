"""Research code kept with its measurements (issue 8); not part of the installed package."""
