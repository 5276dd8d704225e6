"""Seeded synthetic repositories: the internal code, documents and data of small businesses.

Each repository belongs to one made-up business (a bakery, a bicycle
workshop, a dental practice...) and looks like what such a company keeps in
version control: a Python package with one sub-package per business area
(orders, billing, deliveries...) and deeper helper modules, markdown
documentation (policies, guides, meeting notes), CSV tables and JSON settings,
scripts, tests, and a few files no question is about (a logo, a Makefile,
requirements). Folders nest up to depth 4; file contents are short so that
the part a question is about fits in the agent's file view.

Everything is drawn from `random.Random` seeded with a string, so the same
(seed, business, name) always gives byte-identical files. All text is written
here from small vocabularies; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from random import Random

FIRST_NAMES = (
    "Ada Bram Carla Dmitri Elif Femi Greta Hugo Ines Jonas Kaia Luca Mira Nils Olga Pavel Quinn Rosa Sami Tove "
    "Uma Viktor Wanda Xavi Yara Zeno Anouk Bilal Chiara Dario Esme Farid Gwen Hana Ivo Jana Kofi Lotte Mateo Noor"
).split()
LAST_NAMES = (
    "Abbott Berg Costa Duval Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lind Moreau Novak Okafor Petrov "
    "Quist Rossi Sato Tanaka Ueda Varga Weber Yilmaz Zimmer Bauer Castro Dekker Evans Ferrari"
).split()
CITIES = (
    "Lyon Porto Ghent Bergen Graz Utrecht Malmo Turku Brno Leeds Cork Bilbao Aarhus Basel Gdansk Ljubljana "
    "Tartu Verona Nantes Kassel"
).split()
COUNTRIES = ("France", "Portugal", "Belgium", "Norway", "Austria", "Netherlands", "Sweden", "Finland", "Czechia", "Spain")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


@dataclass(frozen=True)
class Business:
    """The vocabulary of one kind of business."""

    kind: str
    """What the business is, e.g. 'bakery'."""
    names: tuple[str, ...]
    """Candidate company names."""
    items: tuple[str, ...]
    """Things it sells or does."""
    roles: tuple[str, ...]
    """Job titles of its staff."""
    places: tuple[str, ...]
    """Places inside the business."""


BUSINESSES = (
    Business("bakery", ("Golden Crust", "Crumb and Co", "Rising Dough"), ("rye sourdough loaf", "almond croissant", "cinnamon bun", "spelt baguette", "seeded roll", "lemon tart", "apple turnover", "fruit loaf", "pretzel", "carrot cake", "brioche", "focaccia"), ("head baker", "pastry chef", "counter assistant", "delivery driver"), ("front counter", "proving room", "walk-in cooler", "loading bay")),
    Business("bicycle workshop", ("Spoke and Chain", "Freewheel Works", "Gear Shift"), ("brake tune-up", "wheel truing", "chain replacement", "tube repair", "gear service", "frame check", "bell fitting", "light kit", "saddle swap", "cargo bike rental", "city bike", "tyre change"), ("mechanic", "workshop lead", "sales assistant", "rental clerk"), ("repair bench", "parts wall", "storage loft", "test track")),
    Business("dental practice", ("Bright Smile", "Molar Bay", "Clear Enamel"), ("check-up", "scale and polish", "filling", "crown fitting", "root canal", "whitening session", "x-ray", "mouth guard", "retainer", "extraction", "sealant", "night splint"), ("dentist", "hygienist", "receptionist", "dental nurse"), ("surgery room", "waiting room", "sterilisation room", "x-ray booth")),
    Business("bookshop", ("Dog-Eared", "Chapter House", "Inkwell Books"), ("paperback novel", "hardback atlas", "children's picture book", "poetry collection", "cookbook", "travel guide", "graphic novel", "gift card", "reading lamp", "bookmark set", "language course", "signed first edition"), ("bookseller", "buyer", "events host", "shop manager"), ("poetry corner", "children's room", "stock room", "reading cafe")),
    Business("coffee roastery", ("Bean There", "Third Crack", "Copper Roast"), ("Ethiopian filter blend", "house espresso", "decaf Colombia", "cold brew bottle", "pour-over kit", "grinder service", "barista course", "oat flat white", "drip bag box", "green bean sample", "cupping session", "roast subscription"), ("roaster", "barista", "green buyer", "wholesale rep"), ("roasting floor", "cupping lab", "bean store", "espresso bar")),
    Business("plant nursery", ("Green Thumb", "Fern Gully", "Leaf and Root"), ("olive tree", "fiddle-leaf fig", "herb tray", "rose bush", "compost bag", "terracotta pot", "succulent set", "seed potato", "hedge plant", "bonsai kit", "hanging basket", "fruit sapling"), ("grower", "garden adviser", "yard hand", "till operator"), ("glasshouse", "potting shed", "shade tunnel", "yard")),
    Business("craft brewery", ("Hop Yard", "Barrel and Bine", "Foam Line"), ("pale ale keg", "stout bottle", "sour cask", "lager can", "brewery tour", "growler fill", "tasting flight", "merch t-shirt", "gift pack", "alcohol-free lager", "seasonal IPA", "barley wine"), ("brewer", "cellar hand", "taproom manager", "sales rep"), ("brewhouse", "cold store", "taproom", "bottling line")),
    Business("yoga studio", ("Still Point", "Lotus Loft", "Open Breath"), ("morning flow class", "yin session", "teacher training", "mat rental", "ten-class pass", "private lesson", "prenatal class", "meditation course", "retreat weekend", "workshop seat", "gift voucher", "monthly membership"), ("teacher", "studio manager", "front desk host", "cleaner"), ("main hall", "small studio", "changing room", "tea corner")),
    Business("print shop", ("Ink Spot", "Press Ahead", "Paper Trail"), ("business card run", "poster print", "flyer batch", "wedding invitation", "book binding", "banner", "sticker sheet", "letterpress card", "photo canvas", "large-format plot", "lamination", "scanning job"), ("print operator", "designer", "finishing assistant", "account manager"), ("press room", "design desk", "guillotine bench", "paper store")),
    Business("pet grooming salon", ("Wag and Wash", "Fluffy Cuts", "Paws Parlour"), ("full groom", "nail clip", "puppy bath", "de-shedding treatment", "teeth brushing", "cat trim", "flea bath", "ear cleaning", "paw balm", "breed cut", "show preparation", "pick-up service"), ("groomer", "bather", "receptionist", "driver"), ("wash bay", "drying room", "kennel area", "reception")),
    Business("furniture workshop", ("Dovetail", "Grain and Glue", "Oak Bench"), ("dining table", "oak shelf", "walnut desk", "chair repair", "custom wardrobe", "kitchen worktop", "bed frame", "stool", "cabinet refinish", "bookcase", "garden bench", "veneer sample"), ("joiner", "finisher", "designer", "workshop manager"), ("machine room", "finishing booth", "timber rack", "showroom")),
    Business("ski rental", ("Powder Day", "Edge and Wax", "Summit Rentals"), ("ski set", "snowboard", "helmet", "boot fitting", "wax service", "edge sharpening", "kids' package", "touring kit", "avalanche beacon", "goggles", "season locker", "lesson booking"), ("rental technician", "boot fitter", "counter clerk", "instructor"), ("rental counter", "boot room", "workshop", "locker hall")),
    Business("tea importer", ("Leaf Route", "Steep and Pour", "Jade Kettle"), ("Darjeeling first flush", "sencha", "oolong", "rooibos", "chai blend", "jasmine pearls", "matcha tin", "tea sampler", "cast iron teapot", "herbal infusion", "Earl Grey", "pu-erh cake"), ("buyer", "blender", "warehouse lead", "shop assistant"), ("tasting room", "blending room", "warehouse", "shop floor")),
    Business("music school", ("Treble Clef", "Open Strings", "Beat Street"), ("piano lesson", "guitar course", "drum workshop", "violin rental", "choir place", "exam preparation", "band coaching", "recording session", "theory class", "summer camp", "ukulele group", "songwriting course"), ("teacher", "school administrator", "caretaker", "events coordinator"), ("recital hall", "practice room", "instrument store", "office")),
    Business("laundry service", ("Fresh Fold", "Spin Cycle", "Clean Sweep"), ("wash and fold bag", "dry cleaning", "duvet clean", "shirt press", "alteration", "stain treatment", "curtain clean", "express service", "wedding dress clean", "leather care", "pick-up slot", "linen hire"), ("attendant", "presser", "driver", "shift supervisor"), ("wash floor", "pressing station", "drying room", "counter")),
    Business("farm shop", ("Hedgerow", "Old Mill Farm", "Meadow Basket"), ("free-range eggs", "raw honey", "apple juice", "farmhouse cheddar", "veg box", "lamb chops", "strawberry punnet", "sourdough bread", "jam jar", "organic milk", "pumpkin", "Christmas tree"), ("farm hand", "shop assistant", "butcher", "box packer"), ("farm gate", "cold room", "packing shed", "shop floor")),
)


@dataclass(frozen=True)
class Area:
    """One business area: a sub-package of the company's code."""

    name: str
    noun: str
    metrics: tuple[str, ...]
    subs: tuple[tuple[str, tuple[str, ...]], ...]
    """(sub-package name, its metrics) for deeper modules."""


AREAS = (
    Area("orders", "order", ("total value", "item count", "average basket size", "packing time"), (("returns", ("refund amount", "return rate")), ("batching", ("batch size", "waiting time")))),
    Area("billing", "invoice", ("amount due", "late fee", "payment delay", "discount"), (("taxes", ("tax amount", "tax rate")), ("reminders", ("reminder count", "days overdue")))),
    Area("inventory", "stock item", ("reorder level", "shelf life", "storage cost", "stock count"), (("forecasting", ("expected demand", "safety stock")), ("audits", ("shrinkage", "count difference")))),
    Area("deliveries", "delivery", ("distance", "delay", "fuel cost", "driver hours"), (("routing", ("route length", "stop count")), ("tracking", ("arrival estimate", "late minutes")))),
    Area("staff", "shift", ("overtime", "hours worked", "break time", "holiday allowance"), (("rota", ("cover gap", "shift swap count")), ("payroll", ("gross pay", "pension contribution")))),
    Area("customers", "customer", ("loyalty points", "lifetime value", "visit count", "churn risk"), (("loyalty", ("reward level", "points expiry")), ("feedback", ("satisfaction score", "complaint count")))),
    Area("suppliers", "supplier", ("lead time", "reliability score", "price change", "minimum order"), (("contracts", ("renewal date", "notice period")), ("quality", ("defect rate", "rejected lots")))),
    Area("bookings", "booking", ("no-show rate", "duration", "deposit", "cancellation fee"), (("calendar", ("free slots", "double bookings")), ("waitlist", ("waitlist position", "offer expiry")))),
    Area("pricing", "price", ("margin", "bulk discount", "seasonal markup", "rounding step"), (("promotions", ("promo uplift", "voucher value")), ("competitors", ("price gap", "market average")))),
    Area("maintenance", "machine", ("service interval", "downtime", "repair cost", "energy use"), (("schedules", ("next service date", "overdue jobs")), ("parts", ("spare parts cost", "part lifetime")))),
)

QUALIFIERS = (
    "for the current week", "across all branches", "in a given month", "since the last stocktake",
    "for a single region", "over the past quarter", "per opening day", "for the weekend shifts",
    "during the holiday season", "for wholesale accounts", "for online orders", "for the morning round",
)
GROUPS = ("weekday", "branch", "region", "month", "team", "channel")
SOURCES = ("till", "web shop", "spreadsheet", "accounting", "booking system")
ROUNDING = ("five cents", "ten cents", "whole euro", "quarter hour")


def snake(text: str) -> str:
    """'late fee' -> 'late_fee' (a Python identifier)."""
    return re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_")


def plural(noun: str) -> str:
    """English plural of the nouns used here."""
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


def article(noun: str) -> str:
    """'a' or 'an' before `noun`."""
    return "an" if noun[:1].casefold() in "aeiou" else "a"


# ----------------------------------------------------------------------- code
def _function(rng: Random, noun: str, metric: str, used: set[str], roles: tuple[str, ...]) -> str | None:
    """One documented function about `metric` of `noun`, or None if its name or docstring is taken."""
    nouns, m, n = plural(noun), snake(metric), rng.randint(2, 40)
    qual = rng.choice(QUALIFIERS)
    options = [
        (f"compute_{m}", f"Compute the {metric} of each {noun} {qual}.", "items", f"    return {{item['id']: round(item.get('{m}', 0) * {1 + n / 100:.2f}, 2) for item in items}}"),
        (f"{m}_for", f"Return the {metric} for one {noun} {qual}.", "item, default=0.0", f"    value = item.get('{m}', default)\n    return max(value, 0.0)"),
        (f"check_{m}", f"Check that the {metric} of {article(noun)} {noun} stays below {n} {qual}.", f"item, limit={n}", f"    if item.get('{m}', 0) > limit:\n        raise ValueError(f\"{metric} above {{limit}} for {{item['id']}}\")\n    return True"),
        (f"{snake(nouns)}_over_{m}", f"List every {noun} whose {metric} exceeds {n} {qual}.", f"items, threshold={n}", f"    return [item for item in items if item.get('{m}', 0) > threshold]"),
        (f"summarise_{m}", f"Summarise the {metric} per {rng.choice(GROUPS)} {qual}.", "items, key='group'", f"    totals = {{}}\n    for item in items:\n        totals[item[key]] = totals.get(item[key], 0) + item.get('{m}', 0)\n    return totals"),
        (f"estimate_{m}", f"Estimate the {metric} of the next {noun} from the last {n} ones.", f"history, window={n}", "    recent = history[-window:]\n    return sum(recent) / len(recent) if recent else 0.0"),
        (f"load_{snake(nouns)}_{m}", f"Load the {metric} figures from the {rng.choice(SOURCES)} export, skipping rows older than {n} days.", f"rows, max_age_days={n}", f"    return [row for row in rows if row.get('age_days', 0) <= max_age_days and '{m}' in row]"),
        (f"notify_{m}", f"Send a message to the {rng.choice(roles)} when the {metric} of {article(noun)} {noun} passes {n}.", f"item, send, limit={n}", f"    if item.get('{m}', 0) > limit:\n        send(f\"{noun} {{item['id']}}: {metric} is {{item['{m}']}}\")"),
        (f"round_{m}", f"Round the {metric} to the nearest {rng.choice(ROUNDING)} as the accountant asks.", "value, step=0.05", "    return round(round(value / step) * step, 2)"),
    ]
    rng.shuffle(options)
    for name, doc, params, body in options:
        if name not in used and doc not in used:
            used.update((name, doc))
            detail = rng.choice(
                (
                    f"Missing values count as zero; the {rng.choice(roles)} checks the result by hand.",
                    f"Used by the nightly report since version 1.{rng.randint(0, 9)}.",
                    "Values come straight from the database, in euros where money is involved.",
                    f"See the {noun} policy in the docs folder for the business rule.",
                )
            )
            return f'def {name}({params}):\n    """{doc}\n\n    {detail}\n    """\n{body}\n'
    return None


def _module(rng: Random, business: Business, company: str, area: Area, noun: str, metrics: tuple[str, ...], used: set[str], title: str) -> str:
    """A module of 2-3 documented functions (and sometimes a class) about `metrics`."""
    funcs = []
    for metric in rng.sample(list(metrics), len(metrics)):
        for _ in range(2):
            code = _function(rng, noun, metric, used, business.roles)
            if code:
                funcs.append(code)
                break
    parts = [f'"""{title} for {company}, the {business.kind}."""\n']
    parts += funcs[:3]
    if rng.random() < 0.5:
        cls = f"{''.join(w.capitalize() for w in snake(noun).split('_'))}Register"
        place = rng.choice(business.places)
        doc = f"Keeps the open {plural(noun)} of the {place} in memory until the nightly sync."
        if doc not in used:
            used.add(doc)
            parts.append(
                f'class {cls}:\n    """{doc}"""\n\n    def __init__(self):\n        self._open = {{}}\n\n'
                f"    def add(self, key, record):\n        self._open[key] = record\n\n"
                f"    def close(self, key):\n        return self._open.pop(key, None)\n"
            )
    return "\n\n".join(parts)


# ------------------------------------------------------------------ documents
TOPICS = {
    "refunds": ("Refund policy", (
        ("Refund window", "Customers may return a {item} within {n} days if it is unused and they have the receipt."),
        ("Damaged goods", "A damaged {item} is replaced at once; the {role} logs it in the damage book before the end of the day."),
        ("Store credit", "Without a receipt we offer store credit, valid for {m} months."),
        ("Who approves refunds", "Refunds above {price} euros need approval from {person}."),
    )),
    "opening-hours": ("Opening hours", (
        ("Weekdays", "From Monday to Friday the {place} opens at {time} and closes at {close}."),
        ("Weekends", "On {weekday}s we open an hour later and close at {close2}."),
        ("Public holidays", "On public holidays only the {place} is staffed, by one {role}."),
        ("Closing routine", "The last {role} on duty locks the {place} and sets the alarm, code kept by {person}."),
    )),
    "onboarding": ("Onboarding new staff", (
        ("First day", "A new {role} spends the first day shadowing {person} at the {place}."),
        ("Accounts", "IT accounts are requested from {person} at least {n} days before the start date."),
        ("Training plan", "The training plan covers the {item} in the first week and safety in the second."),
        ("Probation", "Probation lasts {m} months and ends with a review by the {role}."),
    )),
    "safety": ("Health and safety", (
        ("Fire exits", "Fire exits by the {place} must stay clear; {person} checks them every {weekday}."),
        ("First aid", "The first aid kit hangs next to the {place} door and is restocked every {n} weeks."),
        ("Accident book", "Every accident, even a small cut, goes into the accident book within {n} hours."),
        ("Heavy lifting", "Loads above {kg} kilograms are lifted by two people or with the trolley."),
    )),
    "deliveries": ("Delivery rules", (
        ("Delivery area", "We deliver within {km} kilometres of the shop; further addresses pay a surcharge of {price} euros."),
        ("Time slots", "Customers pick a two-hour slot; the first slot starts at {time}."),
        ("Failed deliveries", "After {n} failed attempts the {item} goes back to the {place} and the customer is called."),
        ("Driver checks", "Drivers check tyre pressure every {weekday} and note it in the van log."),
    )),
    "pricing": ("Pricing guidelines", (
        ("Price reviews", "Prices are reviewed every {m} months by {person} and the {role}."),
        ("Bulk orders", "Orders of more than {n} units get a discount of {pct} percent."),
        ("Sale items", "Sale labels are yellow, and a {item} on sale cannot be returned."),
        ("Rounding", "Shelf prices always end in 0.{d}9 so that the till matches the label."),
    )),
    "holidays": ("Holiday requests", (
        ("How to ask", "Holiday requests go to {person} at least {n} weeks ahead through the staff portal."),
        ("Busy periods", "No holidays are granted in {month}, our busiest month."),
        ("Carry over", "Up to {m} unused days carry over to the next year."),
        ("Sick days", "Call the {role} before {time} if you are sick; a note is needed after {n} days."),
    )),
    "equipment": ("Equipment care", (
        ("Daily cleaning", "The equipment in the {place} is cleaned at closing time with the green cloths only."),
        ("Service contract", "The service contract with {supplier} covers one visit every {m} months."),
        ("Breakdowns", "Report a breakdown to {person}; do not open the machine casing yourself."),
        ("Replacement budget", "The yearly replacement budget is {price} euros, agreed with the owner."),
    )),
    "complaints": ("Handling complaints", (
        ("Listening first", "Let the customer finish, then repeat the complaint back in your own words."),
        ("Escalation", "A complaint that is not solved within {n} days goes to {person}."),
        ("Goodwill", "Staff may offer a free {item} as goodwill without asking a manager."),
        ("Recording", "Every complaint is recorded in the complaints sheet with the date and the {role} who took it."),
    )),
    "suppliers": ("Working with suppliers", (
        ("Preferred suppliers", "Our preferred supplier for {item} supplies is {supplier}, chosen for their lead time."),
        ("Orders", "Supplier orders are placed on {weekday} mornings before {time}."),
        ("Quality checks", "Goods are checked at the {place} on arrival and rejected lots are photographed."),
        ("Payment terms", "Suppliers are paid within {n} days of the invoice date."),
    )),
}
MEETING_SENTENCES = (
    "{person} proposed moving the {item} display closer to the {place}.",
    "We agreed to try a loyalty card that gives one free {item} after {n} visits.",
    "The {role} reported that the {place} heating failed twice in {month}.",
    "{person} will ask {supplier} for a quote on a second {place} shelf.",
    "Sales of the {item} rose by {pct} percent after the window display changed.",
    "Next meeting on the first {weekday} of {month}, chaired by {person}.",
)


def _fill(template: str, rng: Random, ctx: dict) -> str:
    values = {
        "item": rng.choice(ctx["business"].items),
        "role": rng.choice(ctx["business"].roles),
        "place": rng.choice(ctx["business"].places),
        "person": rng.choice(ctx["people"]),
        "supplier": rng.choice(ctx["suppliers"]),
        "n": rng.randint(2, 30),
        "m": rng.randint(2, 12),
        "price": rng.randint(5, 60) * 10,
        "pct": rng.choice((5, 8, 10, 12, 15, 20, 25)),
        "time": f"{rng.randint(6, 10)}:{rng.choice(('00', '15', '30', '45'))}",
        "close": f"{rng.randint(17, 20)}:{rng.choice(('00', '30'))}",
        "close2": f"{rng.randint(13, 17)}:{rng.choice(('00', '30'))}",
        "weekday": rng.choice(WEEKDAYS),
        "month": rng.choice(MONTHS),
        "kg": rng.choice((15, 20, 23, 25)),
        "km": rng.randint(3, 25),
        "d": rng.randint(1, 9),
    }
    return template.format(**values)


def _document(rng: Random, topic: str, ctx: dict) -> str:
    title, sections = TOPICS[topic]
    chosen = rng.sample(list(sections), rng.randint(3, len(sections)))
    intro = f"This page describes how {ctx['company']} handles {title.lower()}. Ask {rng.choice(ctx['people'])} if something is unclear."
    body = [f"# {title}", "", intro, ""]
    for heading, sentence in chosen:
        body += [f"## {heading}", "", _fill(sentence, rng, ctx), ""]
    return "\n".join(body)


def _meeting_notes(rng: Random, ctx: dict, month: str) -> str:
    lines = [f"# Team meeting, {month}", "", f"Present: {', '.join(rng.sample(ctx['people'], 3))}.", ""]
    for sentence in rng.sample(MEETING_SENTENCES, 4):
        lines += [_fill(sentence, rng, ctx), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------- data
def _csv(header: list[str], rows: list[list]) -> str:
    return "\n".join([",".join(header)] + [",".join(str(v) for v in row) for row in rows]) + "\n"


def _tables(rng: Random, ctx: dict) -> dict[str, str]:
    business = ctx["business"]
    items = rng.sample(list(business.items), 8)
    people = ctx["people"]
    tables = {
        "products": _csv(["sku", "name", "price_eur", "in_stock"], [[f"{business.kind[:2].upper()}{100 + i}", item, f"{rng.randint(2, 90)}.{rng.randint(0, 99):02d}", rng.randint(0, 60)] for i, item in enumerate(items)]),
        "customers": _csv(["customer", "city", "member_since", "visits"], [[p, rng.choice(CITIES), f"20{rng.randint(15, 23)}-{rng.randint(1, 12):02d}", rng.randint(1, 80)] for p in people[8:14]]),
        "staff": _csv(["employee", "role", "weekly_hours", "start_date"], [[p, rng.choice(business.roles), rng.choice((16, 20, 24, 32, 38)), f"20{rng.randint(12, 23)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"] for p in people[:6]]),
        "suppliers": _csv(["supplier", "country", "lead_time_days", "rating"], [[s, rng.choice(COUNTRIES), rng.randint(1, 21), rng.randint(1, 5)] for s in ctx["suppliers"]]),
        "equipment": _csv(["equipment", "location", "last_service", "interval_days"], [[f"{place} unit {k}", place, f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", rng.choice((30, 60, 90, 180))] for k, place in enumerate(business.places, start=1)]),
        "campaigns": _csv(["campaign", "channel", "budget_eur", "signups"], [[f"{m} {rng.choice(('offer', 'newsletter', 'open day', 'raffle'))}", rng.choice(("email", "flyer", "social", "radio")), rng.randint(1, 30) * 50, rng.randint(5, 400)] for m in rng.sample(MONTHS, 5)]),
    }
    return tables


def _sales(rng: Random, year: int, month: int, skus: list[str]) -> str:
    days = sorted(rng.sample(range(1, 29), 6))
    return _csv(["date", "sku", "quantity", "revenue_eur"], [[f"{year}-{month:02d}-{d:02d}", rng.choice(skus), rng.randint(1, 40), f"{rng.randint(20, 900)}.{rng.randint(0, 99):02d}"] for d in days])


def _settings(rng: Random, ctx: dict) -> dict[str, str]:
    settings = {
        "shop_name": ctx["company"],
        "currency": "EUR",
        "opening_time": f"0{rng.randint(6, 9)}:{rng.choice(('00', '30'))}",
        "closing_time": f"{rng.randint(17, 20)}:{rng.choice(('00', '30'))}",
        "vat_rate": rng.choice((0.06, 0.09, 0.1, 0.2, 0.21)),
        "loyalty": {"points_per_euro": rng.randint(1, 5), "reward_threshold": rng.randint(5, 30) * 10},
    }
    notifications = {
        "reminder_days_before": rng.randint(1, 5),
        "sender_address": f"hello@{snake(ctx['company']).replace('_', '')}.example",
        "sms_enabled": rng.random() < 0.5,
        "quiet_hours": {"start": f"{rng.randint(20, 23)}:00", "end": f"0{rng.randint(6, 8)}:00"},
    }
    pricing = {
        "bulk_minimum_units": rng.randint(10, 50),
        "bulk_discount_percent": rng.choice((5, 10, 15)),
        "price_review_months": rng.choice((3, 6, 12)),
        "staff_discount_percent": rng.choice((10, 20, 30)),
    }
    return {
        "settings.json": json.dumps(settings, indent=2),
        "notifications.json": json.dumps(notifications, indent=2),
        "pricing.json": json.dumps(pricing, indent=2),
    }


# ---------------------------------------------------------------- repository
# Eight bytes of a PNG header and some noise: a file the agent must recognise as binary.
_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def repository_files(business: Business, seed: int | str, name: str) -> dict[str, bytes]:
    """The files of one synthetic repository: relative POSIX path -> content."""
    rng = Random(f"autoexplore-synthetic/{seed}/{business.kind}/{name}")
    company = rng.choice(business.names)
    people = [f"{a} {b}" for a, b in zip(rng.sample(FIRST_NAMES, 16), rng.sample(LAST_NAMES, 16), strict=True)]
    suppliers = [f"{rng.choice(LAST_NAMES)} {kind}" for kind in rng.sample(("Wholesale", "Supplies", "Trading", "Logistics", "and Sons", "Distribution"), 4)]
    ctx = {"business": business, "company": company, "people": people, "suppliers": suppliers}
    pkg = snake(company.split()[0]) + rng.choice(("", "_tools", "_ops", "_app"))
    files: dict[str, str | bytes] = {}
    used: set[str] = set()

    # depth 0: the front page and a few things no question is about
    files["README.md"] = "\n".join([
        f"# {company}",
        "",
        f"Internal tools of {company}, a {business.kind} in {rng.choice(CITIES)} run by {people[0]}.",
        "",
        "## Getting started",
        "",
        f"Install the package with pip and run the {pkg} command; {people[1]} keeps the server credentials.",
        "",
        "## Layout",
        "",
        f"Code lives in {pkg}, documents in docs, and exported tables in data.",
        "",
    ])
    files["CHANGELOG.md"] = "\n".join(
        f"## 1.{v}.0\n\n{_fill(rng.choice(('Added a report for the {item} sales of {month}.', 'Fixed the {place} stock count when a delivery arrived late.', 'Moved the {role} rota to the new calendar.')), rng, ctx)}\n"
        for v in range(rng.randint(2, 4), 0, -1)
    )
    files["notes.txt"] = "\n\n".join(_fill(s, rng, ctx) for s in rng.sample(MEETING_SENTENCES, 2)) + "\n"
    files["requirements.txt"] = "requests>=2.28\npyyaml>=6.0\n"
    files["Makefile"] = "test:\n\tpython -m pytest tests\n\nreport:\n\tpython scripts/nightly_report.py\n"
    files["manage.py"] = f'"""Command line entry point that runs the {company} maintenance jobs by name."""\n\nimport sys\n\n\ndef main(argv=None):\n    """Dispatch the job named on the command line."""\n    argv = sys.argv[1:] if argv is None else argv\n    return 0 if argv else 1\n'

    # depth 1-4: the package
    areas = rng.sample(list(AREAS), 4)
    files[f"{pkg}/__init__.py"] = f'"""Business logic of {company}: {", ".join(a.name for a in areas)}."""\n'
    files[f"{pkg}/cli.py"] = f'"""Text menu used at the {rng.choice(business.places)} to start daily jobs."""\n\n\ndef menu(jobs):\n    """Print the numbered list of jobs a {rng.choice(business.roles)} may start."""\n    for number, job in enumerate(jobs, start=1):\n        print(number, job)\n'
    for area in areas:
        base = f"{pkg}/{area.name}"
        files[f"{base}/__init__.py"] = f'"""{area.name.capitalize()} of {company}."""\n'
        metrics = list(area.metrics)
        rng.shuffle(metrics)
        files[f"{base}/core.py"] = _module(rng, business, company, area, area.noun, tuple(metrics[:2]), used, f"Everyday {area.noun} calculations")
        files[f"{base}/{snake(metrics[2])}.py"] = _module(rng, business, company, area, area.noun, tuple(metrics[2:]), used, f"The {metrics[2]} rules")
        for sub, sub_metrics in rng.sample(list(area.subs), rng.randint(1, 2)):
            files[f"{base}/{sub}/__init__.py"] = ""
            files[f"{base}/{sub}/{snake(sub_metrics[0])}.py"] = _module(rng, business, company, area, area.noun, sub_metrics, used, f"{sub.capitalize()} helpers")
            if rng.random() < 0.5:
                files[f"{base}/{sub}/legacy/old_{snake(sub_metrics[1])}.py"] = _module(rng, business, company, area, area.noun, sub_metrics[1:], used, f"Old {sub} code kept for the {rng.randint(2015, 2020)} archive")

    # depth 1-3: documents
    topics = rng.sample(sorted(TOPICS), 7)
    for topic in topics[:2]:
        files[f"docs/{topic}.md"] = _document(rng, topic, ctx)
    for topic in topics[2:4]:
        files[f"docs/policies/{topic}.md"] = _document(rng, topic, ctx)
    team = snake(rng.choice(business.roles)).replace("_", "-") + "s"
    for topic in topics[4:6]:
        files[f"docs/guides/{team}/{topic}.md"] = _document(rng, topic, ctx)
    month = rng.choice(MONTHS)
    notes_name = f"Team meeting {month}.md" if rng.random() < 0.5 else f"meeting-{month.lower()}.md"
    files[f"docs/meetings/{notes_name}"] = _meeting_notes(rng, ctx, month)

    # depth 1-4: data and configuration
    tables = _tables(rng, ctx)
    names = rng.sample(sorted(tables), 5)
    for table in names[:2]:
        files[f"data/{table}.csv"] = tables[table]
    year = rng.randint(2019, 2023)
    for table in names[2:3]:
        files[f"data/{year}/{table}.csv"] = tables[table]
    skus = [line.split(",")[0] for line in tables["products"].splitlines()[1:]]
    for month_number in rng.sample(range(1, 13), 2):
        files[f"data/{year}/sales/{MONTHS[month_number - 1].lower()}.csv"] = _sales(rng, year, month_number, skus)
    for table in names[3:5]:
        files[f"data/archive/{year - 1}/{table}.csv"] = tables[table]
    files[f"data/archive/{year - 1}/raw/export_{rng.randint(100, 999)}.csv"] = _sales(rng, year - 1, rng.randint(1, 12), skus)
    for file_name, text in _settings(rng, ctx).items():
        files[f"config/{file_name}"] = text + "\n"

    # depth 1-2: scripts, tests, assets
    files["scripts/nightly_report.py"] = f'"""Builds the nightly sales summary that {people[2]} reads each morning."""\n\n\ndef main():\n    """Collect yesterday\'s till totals and write them to the report folder."""\n    return None\n'
    files["scripts/backup.py"] = f'"""Copies the database dump to the {rng.choice(("office NAS", "cloud bucket", "USB drive"))} every night."""\n'
    area = areas[0]
    files[f"tests/test_{area.name}.py"] = (
        f'"""Tests of the {area.name} package."""\n\n\n'
        f'def test_empty_{snake(area.noun)}_list():\n    """An empty list of {plural(area.noun)} gives an empty {area.name} summary."""\n    assert [] == []\n'
    )
    files["assets/logo.png"] = _PNG_HEAD + bytes(rng.randrange(256) for _ in range(200))
    return {path: (data if isinstance(data, bytes) else data.encode("utf-8")) for path, data in files.items()}


def write_repository(files: dict[str, bytes], dest: str | os.PathLike) -> Path:
    """Create the files of a repository under `dest` (which must not exist yet)."""
    dest = Path(dest)
    dest.mkdir(parents=True)
    for rel, data in sorted(files.items()):
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


def repository_name(business: Business, index: int) -> str:
    """Folder name of the `index`-th repository of a business, e.g. 'bakery-tools-1'."""
    return f"{business.kind.replace(' ', '-').replace(chr(39), '')}-{index}"
