"""Deepgram's `measurements=true`: spoken units of measurement after a number become their
abbreviations ("10 kilometers" -> "10 km", "5 milligrams" -> "5 mg"). English only, like Deepgram's.

What this server renders:
- a unit is converted only right after a number written in digits ("10", "2.5", "1,000", "3/4"):
  Whisper writes numbers so, and "a few meters" or "the meter" must stay words;
- the number stays its own word and the abbreviation is the next one ("10 km", not "10km"), as
  Deepgram's words are;
- a unit of several words ("kilometers per hour", "square feet", "degrees Celsius") becomes one word
  spanning them: the first word's start to the last one's end, the lowest confidence of them;
- punctuation around the unit stays ("5 miles." -> "5 mi.");
- "pounds" is left alone: after a number it is as often money as weight.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .transcript import Transcript, Word, around, rewritten


def _forms(abbreviation: str, *names: str) -> dict[tuple[str, ...], str]:
    return {tuple(name.split()): abbreviation for name in names}


UNITS: dict[tuple[str, ...], str] = {
    # length
    **_forms("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    **_forms("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    **_forms("m", "meter", "meters", "metre", "metres"),
    **_forms("km", "kilometer", "kilometers", "kilometre", "kilometres"),
    **_forms("in", "inch", "inches"),
    **_forms("ft", "foot", "feet"),
    **_forms("yd", "yard", "yards"),
    **_forms("mi", "mile", "miles"),
    # mass
    **_forms("mg", "milligram", "milligrams", "milligramme", "milligrammes"),
    **_forms("g", "gram", "grams", "gramme", "grammes"),
    **_forms("kg", "kilogram", "kilograms", "kilogramme", "kilogrammes", "kilo", "kilos"),
    **_forms("oz", "ounce", "ounces"),
    **_forms("mcg", "microgram", "micrograms"),
    # volume
    **_forms("mL", "milliliter", "milliliters", "millilitre", "millilitres"),
    **_forms("L", "liter", "liters", "litre", "litres"),
    **_forms("gal", "gallon", "gallons"),
    **_forms("cc", "cubic centimeter", "cubic centimeters", "cubic centimetre", "cubic centimetres"),
    # area
    **_forms("sq ft", "square foot", "square feet"),
    **_forms("m²", "square meter", "square meters", "square metre", "square metres"),
    **_forms("km²", "square kilometer", "square kilometers", "square kilometre", "square kilometres"),
    # speed
    **_forms("km/h", "kilometers per hour", "kilometer per hour", "kilometres per hour", "kilometre per hour"),
    **_forms("mph", "miles per hour", "mile per hour"),
    **_forms("m/s", "meters per second", "meter per second", "metres per second", "metre per second"),
    # temperature
    **_forms("°C", "degrees celsius", "degree celsius", "degrees centigrade"),
    **_forms("°F", "degrees fahrenheit", "degree fahrenheit"),
    # time, frequency, data, power
    **_forms("ms", "millisecond", "milliseconds"),
    **_forms("Hz", "hertz"),
    **_forms("kHz", "kilohertz"),
    **_forms("MHz", "megahertz"),
    **_forms("GHz", "gigahertz"),
    **_forms("KB", "kilobyte", "kilobytes"),
    **_forms("MB", "megabyte", "megabytes"),
    **_forms("GB", "gigabyte", "gigabytes"),
    **_forms("TB", "terabyte", "terabytes"),
    **_forms("W", "watt", "watts"),
    **_forms("kW", "kilowatt", "kilowatts"),
    **_forms("kWh", "kilowatt hour", "kilowatt hours"),
    **_forms("V", "volt", "volts"),
}
_LONGEST = max(len(k) for k in UNITS)
_NUMBER = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?(/\d+)?$")


def apply(t: Transcript) -> Transcript:
    keys = [w.word for w in t.words]
    words: list[Word] = []
    i = 0
    while i < len(t.words):
        n = _unit_at(keys, i) if words and _NUMBER.match(words[-1].word) else 0
        if n:
            run = t.words[i : i + n]
            lead, trail = around(run[0].punctuated_word)[0], around(run[-1].punctuated_word)[2]
            abbreviation = UNITS[tuple(keys[i : i + n])]
            words.append(
                replace(
                    run[0],
                    word=abbreviation.lower(),
                    punctuated_word=lead + abbreviation + trail,
                    end=run[-1].end,
                    confidence=min(w.confidence for w in run),
                )
            )
            i += n
        else:
            words.append(t.words[i])
            i += 1
    return rewritten(t, words)


def _unit_at(keys: list[str], i: int) -> int:
    """How many words from `i` spell a unit (the longest that does), 0 for none."""
    for n in range(min(_LONGEST, len(keys) - i), 0, -1):
        if tuple(keys[i : i + n]) in UNITS:
            return n
    return 0
