"""A real browser for the tests of the HTML reports: headless Chromium driven by Selenium.

The browser and its driver are Debian's (``chromium``, ``chromium-driver``; ``.ci/run`` installs
them), found on ``PATH`` and handed to Selenium explicitly, so that Selenium Manager never
downloads a browser or a driver. Where Selenium, the browser or the driver is missing, or the
driver does not start, the test is skipped with the reason.

:func:`check_report_page` opens a report written by :mod:`genre_jax.report_html` and checks
what a person relies on: the page loads without console errors, its confusion cells and error
list are there, the first audio excerpt decodes in the browser's own audio stack, and a click
on a confusion cell lands on the list of that cell's songs.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest

# Decodes the first <audio>'s source with Web Audio: the same decoders the player uses, with
# an answer (``done`` is Selenium's callback for asynchronous scripts) instead of a silent
# player. Data URIs can be fetched from a file:// page.
_DECODE_FIRST_AUDIO = """
const done = arguments[arguments.length - 1];
const audio = document.querySelector("audio");
if (!audio) { done({ok: false, error: "no <audio> element"}); return; }
fetch(audio.src)
  .then(r => r.arrayBuffer())
  .then(b => new OfflineAudioContext(1, 1, 44100).decodeAudioData(b))
  .then(buf => done({ok: true, duration: buf.duration, rate: buf.sampleRate}),
        e => done({ok: false, error: String(e)}));
"""

# Where the browser is after a click: the fragment, whether its target exists, and whether the
# target is within the window (the browser scrolled to it).
_WHERE = """
const id = decodeURIComponent(location.hash.slice(1));
const target = document.getElementById(id);
const top = target ? target.getBoundingClientRect().top : null;
return {hash: location.hash, exists: target !== null,
        visible: target !== null && top >= -1 && top < window.innerHeight};  // -1: sub-pixel
"""


def _browser_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium on PATH (chromium or chromium-browser): apt-get install chromium")


def chromium_driver() -> Any:
    """A headless Chromium WebDriver, 1280 x 2000 px, keeping the browser console's entries;
    skips the test, saying what is missing, where it cannot be had. The caller quits it."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        pytest.skip(f"selenium is not installed ({error}): pip install -e '.[test]'")
    binary = _browser_binary()
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.skip("no chromedriver on PATH: apt-get install chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as error:
        pytest.skip(f"chromedriver ({driver_path}) did not start {binary}: {error.msg}")


def check_report_page(path: Path, screenshot: Path) -> dict[str, Any]:
    """Open the report at ``path`` in headless Chromium, check it as a reader would, and save a
    screenshot of its top to ``screenshot``.

    Asserts: no SEVERE entry in the browser console; the first ``<audio>`` source decodes to
    more than 0 s of audio; clicking an off-diagonal confusion cell's link navigates to its
    fragment, whose target exists and is scrolled into the window. Returns what was found for
    the caller to compare with the page it wrote: ``cells`` (the non-zero confusion cells as
    ``(true, predicted, count)``), ``articles`` (the error list's song ids), ``audio`` (the
    number of players), ``decoded`` (the decoder's answer), ``clicked`` (the link followed) and
    ``landed`` (where the browser went).
    """
    from selenium.webdriver.common.by import By

    driver = chromium_driver()
    try:
        driver.set_script_timeout(30)
        driver.get(path.resolve().as_uri())
        cells = [
            (
                td.get_attribute("data-true"),
                td.get_attribute("data-predicted"),
                int(td.get_attribute("data-count")),
            )
            for td in driver.find_elements(By.CSS_SELECTOR, "table.confusion td[data-count]")
        ]
        articles = [
            a.get_attribute("id")
            for a in driver.find_elements(By.CSS_SELECTOR, "section#errors article.song")
        ]
        audio = len(driver.find_elements(By.TAG_NAME, "audio"))
        decoded = driver.execute_async_script(_DECODE_FIRST_AUDIO)
        assert decoded["ok"], f"the first audio excerpt did not decode: {decoded['error']}"
        assert decoded["duration"] > 0, decoded
        links = driver.find_elements(
            By.XPATH,
            "//table[contains(@class,'confusion')]//td[@data-count != '0' and "
            "@data-true != @data-predicted]/a",
        )
        assert links, "no off-diagonal confusion cell links to its songs"
        clicked = links[0].get_attribute("href")
        links[0].click()
        # A long page may still be laid out when the click lands: wait (up to 10 s) for the
        # browser to have scrolled the target into the window.
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        with contextlib.suppress(TimeoutException):  # the assertion below says where it was
            WebDriverWait(driver, 10, poll_frequency=0.2).until(
                lambda d: d.execute_script(_WHERE)["visible"]
            )
        landed = driver.execute_script(_WHERE)
        assert clicked.endswith(landed["hash"]) and landed["hash"], (clicked, landed)
        assert landed["exists"] and landed["visible"], landed
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, f"console errors: {severe}"
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    positive = [c for c in cells if c[2] > 0]
    return {
        "cells": positive,
        "articles": articles,
        "audio": audio,
        "decoded": decoded,
        "clicked": clicked,
        "landed": landed,
    }
