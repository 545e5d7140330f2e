"""Scene-class vocabulary: readable descriptions of the land-use / land-cover classes of common
remote-sensing scene sets, and the aliases their folders use.

A class name alone ("dense_residential", "storagetanks") is a poor text query; a sentence of what
the scene looks like from above ("a residential area densely packed with houses") gives the text
tower something to match. RS5M (Zhang et al. 2023, "RS5M and GeoRSCLIP") and RemoteCLIP (Liu et
al. 2024) turn class labels into such captions for training; skylens does the same, and the
zero-shot classifier (``SkylensLite.text_classifier``) averages a known class's descriptions with
its prompt templates.

The concepts cover the classes of UC Merced, NWPU-RESISC45, EuroSAT, DOTA, AID, RSSCN7,
WHU-RS19, PatternNet and SIRI-WHU: general land-use words, written from what the classes
mean, not from any image. Unknown names get no description and fall back to templates alone.
"""

from __future__ import annotations

import re

#: canonical concept -> descriptions (each a noun phrase that fits "an aerial image of {}").
CLASS_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "agricultural land": (
        "agricultural land with rows of crops",
        "cultivated fields with parallel furrows",
    ),
    "airplane": ("an airplane parked on the apron", "aircraft with wings seen from above"),
    "airport": (
        "an airport with runways, taxiways and terminal buildings",
        "an airfield with planes near a terminal",
    ),
    "bare land": ("bare land with exposed soil and no vegetation", "an empty plot of bare earth"),
    "baseball diamond": (
        "a baseball field with a fan shaped sandy infield",
        "a baseball diamond surrounded by grass",
    ),
    "basketball court": ("a basketball court with painted lines", "outdoor basketball courts"),
    "beach": ("a sandy beach along the sea shore", "a beach where waves meet the sand"),
    "bridge": ("a bridge crossing over a river", "a bridge spanning water with a road on it"),
    "buildings": ("a group of large buildings with flat roofs", "dense urban buildings and roads"),
    "chaparral": ("chaparral with scattered shrubs on dry soil", "dry scrubland with bushes"),
    "church": ("a church with a cross shaped roof", "a church building in a town"),
    "circular farmland": (
        "circular farmland irrigated by center pivots",
        "round green crop fields",
    ),
    "cloud": ("white clouds covering the ground", "a view obscured by thick clouds"),
    "commercial area": (
        "a commercial area with shops, offices and parking",
        "a downtown commercial district with large buildings",
    ),
    "dense residential": (
        "a residential area densely packed with houses",
        "crowded rows of houses with little space between them",
    ),
    "desert": ("a desert of sand dunes with no vegetation", "dry sandy desert land"),
    "farmland": ("farmland divided into crop fields", "green and brown agricultural fields"),
    "forest": ("a dense forest of trees", "a forest with a closed green canopy"),
    "freeway": ("a freeway with several lanes and cars", "a multi lane highway"),
    "golf course": (
        "a golf course with fairways, greens and sand bunkers",
        "green lawns of a golf course between trees",
    ),
    "ground track field": (
        "a running track around a sports field",
        "an oval athletics track with a football pitch inside",
    ),
    "harbor": ("a harbor with boats moored at docks", "a marina with many boats and piers"),
    "industrial area": (
        "an industrial area with factories and warehouses",
        "large industrial buildings with metal roofs",
    ),
    "intersection": ("a road intersection where streets cross", "a crossroads with traffic lanes"),
    "island": ("a small island surrounded by water", "an island in the sea"),
    "lake": ("a lake of still water surrounded by land", "a blue lake with shoreline"),
    "meadow": ("a meadow of green grass", "an open grassland without trees"),
    "medium residential": (
        "a residential area with houses, gardens and trees",
        "suburban houses along curved streets",
    ),
    "mobile home park": (
        "a mobile home park with rows of trailers",
        "closely spaced mobile homes in rows",
    ),
    "mountain": ("mountains with ridges and valleys", "rugged mountain terrain"),
    "overpass": ("an overpass where roads cross at different levels", "a highway interchange"),
    "palace": ("a palace with courtyards and gardens", "a large historic palace building"),
    "parking lot": ("a parking lot full of cars", "rows of parked cars in a parking area"),
    "railway": ("railway tracks running through the land", "train tracks and railway lines"),
    "railway station": (
        "a railway station with platforms and many tracks",
        "a train station with parallel rails",
    ),
    "rectangular farmland": (
        "rectangular farmland with straight field borders",
        "rectangular crop fields",
    ),
    "residential": ("a residential area with houses and streets", "a neighbourhood of homes"),
    "river": ("a river winding through the land", "a river with banks and vegetation"),
    "roundabout": ("a roundabout with a circular road", "a traffic circle"),
    "runway": ("an airport runway with markings", "a long straight runway"),
    "sea ice": ("sea ice floating on dark water", "broken ice on the sea"),
    "ship": ("a ship sailing on the sea", "a large boat on the water"),
    "snowberg": ("snow covered mountains", "snow and ice on high ground"),
    "sparse residential": (
        "a sparse residential area with scattered houses and trees",
        "a few detached houses with large gardens",
    ),
    "stadium": ("a stadium with stands around a sports field", "a large sports stadium"),
    "storage tanks": ("round white storage tanks", "a tank farm of cylindrical oil tanks"),
    "tennis court": ("a tennis court with white lines", "tennis courts next to each other"),
    "terrace": ("terraced fields on a hillside", "stepped terraces following the slope"),
    "thermal power station": (
        "a thermal power station with cooling towers and chimneys",
        "a power plant",
    ),
    "wetland": ("a wetland of marsh and shallow water", "swampy land with water and reeds"),
    "annual crop": ("fields of annual crops", "cropland with ploughed fields"),
    "herbaceous vegetation": ("herbaceous vegetation and natural grass", "green shrubs and grass"),
    "highway": ("a highway with cars", "a main road crossing the country"),
    "pasture": ("a pasture of grass for grazing", "green grazing land with hedges"),
    "permanent crop": ("orchards and vineyards in rows", "permanent crops such as fruit trees"),
    "sea lake": ("open water of a sea or lake", "a large body of blue water"),
    "center": ("a city center with dense buildings", "the town centre with a square"),
    "park": ("a park with trees, lawns and paths", "a green urban park"),
    "playground": ("a playground with a running track and a sports field", "a school sports field"),
    "pond": ("a pond of still water", "a small pond surrounded by land"),
    "port": ("a port with docks, cranes and ships", "a seaport with piers"),
    "resort": ("a resort with pools and villas", "a holiday resort with buildings and gardens"),
    "school": ("a school with buildings and a playground", "school campus buildings"),
    "square": ("an open public square in a city", "a paved plaza"),
    "viaduct": ("a viaduct carrying a road over the land", "an elevated road on pillars"),
    "water": ("water", "a lake or river"),
    "small vehicle": ("small vehicles such as cars", "cars on a road"),
    "large vehicle": ("large vehicles such as trucks and buses", "trucks"),
    "helicopter": ("a helicopter on a helipad", "a helicopter seen from above"),
    "swimming pool": ("a swimming pool of blue water", "backyard swimming pools"),
    "soccer ball field": ("a football pitch", "a soccer field with white lines"),
    "container crane": ("container cranes at a port", "cranes loading containers"),
    "idle land": ("idle land left unused", "vacant land"),
    "christmas tree farm": ("rows of small trees on a tree farm", "a tree nursery"),
    "cemetery": ("a cemetery with rows of graves", "a graveyard with paths"),
    "closed road": ("a closed road", "a road blocked for traffic"),
    "coastal mansion": ("a coastal mansion by the sea", "large houses along the coast"),
    "crosswalk": ("a pedestrian crosswalk", "zebra crossing on a street"),
    "ferry terminal": ("a ferry terminal with boats", "a ferry dock"),
    "football field": ("a football field", "a soccer pitch"),
    "nursing home": ("a nursing home building", "a care home with gardens"),
    "oil gas field": ("an oil and gas field with well pads", "oil wells in a field"),
    "oil well": ("an oil well", "an oil pump site"),
    "shipping yard": ("a shipping yard with containers", "stacks of shipping containers"),
    "solar panel": ("solar panels in rows", "a solar farm"),
    "transformer station": ("an electrical transformer station", "an electric substation"),
    "wastewater treatment plant": (
        "a wastewater treatment plant with round tanks",
        "a sewage plant",
    ),
}

#: other spellings -> canonical concept (keys squashed by ``_squash``).
_ALIASES: dict[str, str] = {
    "agricultural": "agricultural land",
    "airplanes": "airplane",
    "plane": "airplane",
    "baseballfield": "baseball diamond",
    "bareland": "bare land",
    "building": "buildings",
    "denseresidential": "dense residential",
    "mediumresidential": "medium residential",
    "sparseresidential": "sparse residential",
    "residentialarea": "residential",
    "resident": "residential",
    "storagetanks": "storage tanks",
    "storagetank": "storage tanks",
    "mobilehomepark": "mobile home park",
    "parkinglot": "parking lot",
    "tenniscourt": "tennis court",
    "golfcourse": "golf course",
    "baseballdiamond": "baseball diamond",
    "industry": "industrial area",
    "industrial": "industrial area",
    "riverlake": "water",
    "groundtrackfield": "ground track field",
    "sealake": "sea lake",
    "annualcrop": "annual crop",
    "permanentcrop": "permanent crop",
    "herbaceousvegetation": "herbaceous vegetation",
    "commercialarea": "commercial area",
    "harbour": "harbor",
    "footballfield": "football field",
    "soccerballfield": "soccer ball field",
    "smallvehicle": "small vehicle",
    "largevehicle": "large vehicle",
    "swimmingpool": "swimming pool",
    "containercrane": "container crane",
    "trackfield": "ground track field",
    "railwaystation": "railway station",
    "thermalpowerstation": "thermal power station",
    "seaice": "sea ice",
    "viaducts": "viaduct",
    "meadows": "meadow",
    "parking": "parking lot",
    "grass": "meadow",
    "field": "farmland",
    "commercial": "commercial area",
    "playgrounds": "playground",
}

#: concepts that overlap (a class and its sub-classes, near-synonyms of other scene sets): an
#: image of one is not a negative for a text of another when training.
RELATED: tuple[frozenset[str], ...] = (
    frozenset({"residential", "dense residential", "medium residential", "sparse residential"}),
    frozenset(
        {
            "farmland",
            "circular farmland",
            "rectangular farmland",
            "agricultural land",
            "annual crop",
            "permanent crop",
        }
    ),
    frozenset({"harbor", "port", "ship"}),
    frozenset({"lake", "pond", "water", "sea lake"}),
    frozenset({"meadow", "pasture", "herbaceous vegetation"}),
    frozenset({"ground track field", "playground", "stadium"}),
    frozenset({"buildings", "commercial area", "center", "industrial area"}),
    frozenset({"freeway", "highway", "overpass"}),
    frozenset({"airplane", "airport", "runway"}),
)
_WORD = re.compile(r"[^a-z0-9]+")


def _squash(name: str) -> str:
    return _WORD.sub("", str(name).lower())


_INDEX: dict[str, str] = {_squash(k): k for k in CLASS_DESCRIPTIONS}
_INDEX.update({k: v for k, v in _ALIASES.items() if k not in _INDEX})


def related(a: str, b: str) -> bool:
    """Whether two concepts are the same or overlap (see ``RELATED``)."""
    return a == b or any(a in g and b in g for g in RELATED)


def canonical_class(name: str) -> str | None:
    """The concept ``name`` spells (``"DenseResidential"``, ``"storage_tank"``), or None.

    >>> canonical_class("storage_tank")
    'storage tanks'
    """
    key = _squash(name)
    if key in _INDEX:
        return _INDEX[key]
    if key.endswith("s") and key[:-1] in _INDEX:
        return _INDEX[key[:-1]]
    return None


def readable(name: str) -> str:
    """A readable form of a class name: the concept if known, else spaces for ``_``/``-``."""
    return canonical_class(name) or re.sub(r"[_\-]+", " ", str(name)).strip().lower()


def describe(name: str) -> tuple[str, ...]:
    """Descriptions of the class ``name`` (empty for a class the vocabulary does not know)."""
    concept = canonical_class(name)
    return CLASS_DESCRIPTIONS.get(concept, ()) if concept else ()


def class_prompts(name: str, templates: tuple[str, ...] | list[str]) -> list[str]:
    """Prompts for one class: every template around ``name`` and around each description."""
    words = re.sub(r"[_]+", " ", str(name)).strip()
    prompts = [t.format(words) for t in templates]
    prompts += [t.format(d) for d in describe(name) for t in templates[:2]]
    return prompts
