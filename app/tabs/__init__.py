"""One module per tab of the web app; each builds its part of the page and owns its callbacks."""
