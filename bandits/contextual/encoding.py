"""From a request's named context fields to the vector a contextual policy scores.

An experiment declares its context as a :class:`ContextSpec`: an intercept and a list of
fields, each writing a fixed block of columns::

    {"intercept": true, "fields": [
        {"name": "age", "type": "numeric", "mean": 41.5, "sd": 12.0},
        {"name": "device", "type": "categorical", "vocabulary": ["ios", "android"],
         "unknown": "other"},
        {"name": "country", "type": "hashed", "buckets": 16},
        {"type": "feature_columns", "indices": [0, 3], "mean": [0.1, 2.0], "sd": [1.0, 0.5]}]}

Choices, and why:

* Numeric fields are standardised with a *declared* mean and sd, ``(v - mean) / sd``: the ridge
  statistics are sums over encoded vectors, so the encoding must not move while they
  accumulate. A mean learned online (Welford) would have to be frozen per revision anyway and
  agreed on by every router; declaring it (e.g. from :meth:`NumericField.from_sample` over
  training data) is simpler and reproducible. Changing it starts a new revision.
* Categorical fields are one-hot over a declared vocabulary. An unknown value gives all
  zeros by default (the intercept's baseline: the prediction of an average category), or an
  extra ``other`` column (``unknown: other``), or an error (``unknown: error``).
* Hashed fields map a value to one of ``buckets`` columns by ``blake2b`` (stable across
  processes; Python's ``hash()`` is salted per process, and routers must agree).
* Feature columns take chosen entries of the numeric feature row the model receives.
* A field marked ``required: false`` that is absent (or null) encodes as zeros (a numeric one
  as its mean). Keys of the context that no field names are ignored, so clients may send more.

Request errors raise :class:`ContextError` (a :class:`ValueError`) naming the field and what
was expected; config errors raise :class:`bandits.PolicyConfigError`.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from bandits._checks import check_int, check_real
from bandits.errors import PolicyConfigError

__all__ = [
    "CategoricalField",
    "ContextError",
    "ContextSpec",
    "FeatureColumns",
    "Field",
    "HashedField",
    "NumericField",
]

Array = npt.NDArray[np.float64]
_PERSON = b"bandit-ctx"  # blake2b personalisation: never collides with other uses


class ContextError(ValueError):
    """A request's context does not match the experiment's :class:`ContextSpec`.

    The serving layer should answer it with 400 and the message, which names the field.
    """


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise PolicyConfigError(f"field name must be a non-empty string, got {name!r}")
    return name


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise PolicyConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _category(value: object) -> str | None:
    """Canonical string of a categorical value; ``None`` if the type is not allowed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return None


def _lookup(context: Mapping[str, Any], name: str, required: bool, kind: str) -> Any:
    value = context.get(name)  # null counts as missing
    if value is None and required:
        raise ContextError(f"context field {name!r} is missing (a required {kind} field)")
    return value


@dataclass(frozen=True)
class NumericField:
    """A number, standardised: ``(value - mean) / sd``.

    Attributes:
        name: Key in the request's context.
        mean: Declared mean.
        sd: Declared standard deviation, ``> 0``.
        required: If false, a missing value encodes as 0 (the mean).

    Example:
        >>> NumericField("age", mean=40, sd=10).encode_value({"age": 55})
        1.5
    """

    name: str
    mean: float = 0.0
    sd: float = 1.0
    required: bool = True

    kind: ClassVar[str] = "numeric"

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "mean", check_real("mean", self.mean, exc=PolicyConfigError))
        object.__setattr__(self, "sd", check_real("sd", self.sd, gt=0, exc=PolicyConfigError))
        _check_bool("required", self.required)

    @classmethod
    def from_sample(
        cls, name: str, values: npt.ArrayLike, *, required: bool = True
    ) -> NumericField:
        """Declare ``mean`` and ``sd`` from a sample (e.g. training data); sd 0 becomes 1.

        Example:
            >>> NumericField.from_sample("x", [1.0, 2.0, 3.0])
            NumericField(name='x', mean=2.0, sd=1.0, required=True)
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1 or v.shape[0] < 2 or not np.isfinite(v).all():
            raise ValueError("values must be at least 2 finite numbers")
        sd = float(v.std(ddof=1))
        return cls(name, mean=float(v.mean()), sd=sd if sd > 0 else 1.0, required=required)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name,)

    def encode_value(self, context: Mapping[str, Any]) -> float:
        """The field's single column for this context."""
        value = _lookup(context, self.name, self.required, self.kind)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ContextError(f"context field {self.name!r} must be a number, got {value!r}")
        x = float(value)
        if not math.isfinite(x):
            raise ContextError(f"context field {self.name!r} must be finite, got {x!r}")
        return (x - self.mean) / self.sd

    def _write(self, out: Array, at: int, context: Mapping[str, Any], features: Any) -> None:
        out[at] = self.encode_value(context)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "name": self.name,
            "mean": self.mean,
            "sd": self.sd,
            "required": self.required,
        }


@dataclass(frozen=True)
class CategoricalField:
    """One-hot over a declared vocabulary.

    Values are compared as strings: ``True``/``False`` as ``"true"``/``"false"``, integers by
    their decimal form; other types are rejected.

    Attributes:
        name: Key in the request's context.
        vocabulary: The known values, at least one, unique.
        unknown: What an unknown value encodes as: ``"zeros"`` (all columns 0), ``"other"``
            (an extra last column) or ``"error"`` (a :class:`ContextError`).
        required: If false, a missing value encodes as all zeros.

    Example:
        >>> f = CategoricalField("device", ("ios", "android"), unknown="other")
        >>> f.columns
        ('device=ios', 'device=android', 'device=<other>')
        >>> f.index({"device": "web"})
        2
    """

    name: str
    vocabulary: tuple[str, ...]
    unknown: Literal["zeros", "other", "error"] = "zeros"
    required: bool = True
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.vocabulary, str) or not isinstance(self.vocabulary, Sequence):
            raise PolicyConfigError(
                f"vocabulary of {self.name!r} must be a list of values, got {self.vocabulary!r}"
            )
        canonical = []
        for value in self.vocabulary:
            key = _category(value)
            if key is None:
                raise PolicyConfigError(
                    f"vocabulary of {self.name!r} must hold strings, integers or booleans, "
                    f"got {value!r}"
                )
            canonical.append(key)
        if not canonical:
            raise PolicyConfigError(f"vocabulary of {self.name!r} must not be empty")
        if len(set(canonical)) != len(canonical):
            raise PolicyConfigError(f"vocabulary of {self.name!r} has duplicate values")
        object.__setattr__(self, "vocabulary", tuple(canonical))
        if self.unknown not in ("zeros", "other", "error"):
            raise PolicyConfigError(
                f"unknown must be 'zeros', 'other' or 'error', got {self.unknown!r}"
            )
        _check_bool("required", self.required)
        object.__setattr__(self, "_positions", {v: i for i, v in enumerate(canonical)})

    @property
    def columns(self) -> tuple[str, ...]:
        names = tuple(f"{self.name}={v}" for v in self.vocabulary)
        return (*names, f"{self.name}=<other>") if self.unknown == "other" else names

    def index(self, context: Mapping[str, Any]) -> int | None:
        """Column (within the field) set to 1 for this context, or ``None`` for all zeros."""
        value = _lookup(context, self.name, self.required, self.kind)
        if value is None:
            return None
        key = _category(value)
        if key is None:
            raise ContextError(
                f"context field {self.name!r} must be a string, integer or boolean, got {value!r}"
            )
        if key in self._positions:
            return self._positions[key]
        if self.unknown == "other":
            return len(self.vocabulary)
        if self.unknown == "error":
            shown = ", ".join(self.vocabulary[:10]) + (", ..." if len(self.vocabulary) > 10 else "")
            raise ContextError(f"context field {self.name!r} must be one of [{shown}], got {key!r}")
        return None

    def _write(self, out: Array, at: int, context: Mapping[str, Any], features: Any) -> None:
        i = self.index(context)
        if i is not None:
            out[at + i] = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "name": self.name,
            "vocabulary": list(self.vocabulary),
            "unknown": self.unknown,
            "required": self.required,
        }


def hash_bucket(name: str, value: str, buckets: int) -> int:
    """Stable bucket of ``value`` for field ``name``: ``blake2b(name, value) mod buckets``.

    Example:
        >>> hash_bucket("country", "fr", 16) == hash_bucket("country", "fr", 16)
        True
    """
    parts = [name.encode(), value.encode()]
    data = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    digest = hashlib.blake2b(data, digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") % buckets


@dataclass(frozen=True)
class HashedField:
    """Feature hashing of a categorical value into ``buckets`` one-hot columns.

    For open vocabularies (countries, user agents). Distinct values may share a bucket; the
    ridge model then learns their average.

    Attributes:
        name: Key in the request's context.
        buckets: Number of columns, ``>= 1``.
        required: If false, a missing value encodes as all zeros.

    Example:
        >>> HashedField("country", 4).columns
        ('country#0', 'country#1', 'country#2', 'country#3')
    """

    name: str
    buckets: int
    required: bool = True

    kind: ClassVar[str] = "hashed"

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(
            self, "buckets", check_int("buckets", self.buckets, ge=1, exc=PolicyConfigError)
        )
        _check_bool("required", self.required)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"{self.name}#{i}" for i in range(self.buckets))

    def _write(self, out: Array, at: int, context: Mapping[str, Any], features: Any) -> None:
        value = _lookup(context, self.name, self.required, self.kind)
        if value is None:
            return
        key = _category(value)
        if key is None:
            raise ContextError(
                f"context field {self.name!r} must be a string, integer or boolean, got {value!r}"
            )
        out[at + hash_bucket(self.name, key, self.buckets)] = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "name": self.name,
            "buckets": self.buckets,
            "required": self.required,
        }


@dataclass(frozen=True)
class FeatureColumns:
    """Chosen entries of the numeric feature row sent to the model, optionally standardised.

    Attributes:
        indices: Column indices into the feature row, at least one, unique, ``>= 0``.
        mean: Declared means (one per index), or ``None`` for 0.
        sd: Declared standard deviations ``> 0`` (one per index), or ``None`` for 1.
        name: Label of the columns (``features[3]``) in :attr:`ContextSpec.columns`.

    Example:
        >>> f = FeatureColumns((2, 0), mean=(1.0, 0.0), sd=(2.0, 1.0))
        >>> f.columns
        ('features[2]', 'features[0]')
    """

    indices: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    sd: tuple[float, ...] | None = None
    name: str = "features"
    _index_array: npt.NDArray[np.intp] = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "feature_columns"

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.indices, str) or not isinstance(self.indices, Sequence):
            raise PolicyConfigError(f"indices must be a list of integers, got {self.indices!r}")
        idx = tuple(check_int("indices[]", i, ge=0, exc=PolicyConfigError) for i in self.indices)
        if not idx or len(set(idx)) != len(idx):
            raise PolicyConfigError(f"indices must be non-empty and unique, got {list(idx)}")
        object.__setattr__(self, "indices", idx)
        for attr, default, lower in (("mean", 0.0, None), ("sd", 1.0, 0.0)):
            given = getattr(self, attr)
            if given is None:
                values = (default,) * len(idx)
            else:
                if len(given) != len(idx):
                    raise PolicyConfigError(
                        f"{attr} must have one value per index ({len(idx)}), got {len(given)}"
                    )
                values = tuple(
                    check_real(f"{attr}[{i}]", v, gt=lower, exc=PolicyConfigError)
                    for i, v in enumerate(given)
                )
            object.__setattr__(self, attr, values)
        object.__setattr__(self, "_index_array", np.array(idx, dtype=np.intp))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"{self.name}[{i}]" for i in self.indices)

    def _write(self, out: Array, at: int, context: Mapping[str, Any], features: Any) -> None:
        if features is None:
            raise ContextError(
                f"the context takes feature columns {list(self.indices)} but no feature row "
                "was given"
            )
        try:
            row = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError):
            raise ContextError("the feature row must be a list of numbers") from None
        if row.ndim != 1:
            raise ContextError(
                f"the feature row must be one list of numbers, got shape {row.shape}"
            )
        top = max(self.indices)
        if row.shape[0] <= top:
            raise ContextError(
                f"feature columns need index {top} but the feature row has {row.shape[0]} values"
            )
        values = row[self._index_array]
        if not np.isfinite(values).all():
            raise ContextError(f"feature columns {list(self.indices)} must be finite")
        assert self.mean is not None  # set in __post_init__
        assert self.sd is not None
        out[at : at + len(self.indices)] = (values - np.array(self.mean)) / np.array(self.sd)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "name": self.name,
            "indices": list(self.indices),
            "mean": list(self.mean or ()),
            "sd": list(self.sd or ()),
        }


Field: TypeAlias = NumericField | CategoricalField | HashedField | FeatureColumns
"""Any field of a :class:`ContextSpec`."""

_FIELD_TYPES: dict[str, type[Field]] = {
    cls.kind: cls for cls in (NumericField, CategoricalField, HashedField, FeatureColumns)
}


@dataclass(frozen=True)
class ContextSpec:
    """The context vector of an experiment: an optional intercept, then every field's block.

    Attributes:
        fields: The fields, in column order; names must be unique.
        intercept: Prepend a constant 1 column (recommended: without it the ridge model
            predicts 0 for an all-zero context).

    Raises:
        PolicyConfigError: Invalid or duplicate fields.

    Example:
        >>> spec = ContextSpec((NumericField("age", 40, 10), HashedField("country", 2)))
        >>> spec.dim, spec.columns
        (4, ('intercept', 'age', 'country#0', 'country#1'))
        >>> spec.encode({"age": 30, "country": "fr", "extra": "ignored"}).tolist()
        [1.0, -1.0, 1.0, 0.0]
        >>> spec.encode({"country": "fr"})
        Traceback (most recent call last):
        ...
        bandits.contextual.encoding.ContextError: context field 'age' is missing (a required \
numeric field)
    """

    fields: tuple[Field, ...]
    intercept: bool = True
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _dim: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.fields, Mapping) or not isinstance(self.fields, Sequence):
            raise PolicyConfigError(f"fields must be a list of fields, got {self.fields!r}")
        object.__setattr__(self, "fields", tuple(self.fields))
        for f in self.fields:
            if not isinstance(f, tuple(_FIELD_TYPES.values())):
                raise PolicyConfigError(f"fields must be field objects, got {f!r}")
        names = [f.name for f in self.fields if not isinstance(f, FeatureColumns)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PolicyConfigError(f"context fields must be unique, repeated: {duplicates}")
        _check_bool("intercept", self.intercept)
        if not self.fields and not self.intercept:
            raise PolicyConfigError("a context needs at least one field or the intercept")
        offsets, at = [], int(self.intercept)
        for f in self.fields:
            offsets.append(at)
            at += len(f.columns)
        object.__setattr__(self, "_offsets", tuple(offsets))
        object.__setattr__(self, "_dim", at)

    @property
    def dim(self) -> int:
        """Length of the encoded vector."""
        return self._dim

    @property
    def columns(self) -> tuple[str, ...]:
        """Name of every column: ``intercept``, ``age``, ``device=ios``, ``country#3``, ..."""
        names = [name for f in self.fields for name in f.columns]
        return ("intercept", *names) if self.intercept else tuple(names)

    def encode(
        self, context: Mapping[str, Any] | None = None, features: npt.ArrayLike | None = None
    ) -> Array:
        """The context vector of one request.

        Args:
            context: The request's ``"context"`` mapping (``None`` for an empty one).
            features: The numeric feature row, for :class:`FeatureColumns` fields.

        Raises:
            ContextError: A field is missing, of the wrong type, not finite, or unknown with
                ``unknown: error``; the message names it.
        """
        if context is None:
            context = {}
        if not isinstance(context, Mapping):
            raise ContextError(f"context must be an object of named fields, got {context!r}")
        out = np.zeros(self.dim)
        if self.intercept:
            out[0] = 1.0
        for f, at in zip(self.fields, self._offsets, strict=True):
            f._write(out, at, context, features)
        return out

    def encode_many(
        self,
        contexts: Sequence[Mapping[str, Any] | None],
        features: npt.ArrayLike | None = None,
    ) -> Array:
        """:meth:`encode` of every record: shape ``(N, dim)``; ``features`` one row per record."""
        rows = None if features is None else np.asarray(features, dtype=np.float64)
        if rows is not None and (rows.ndim != 2 or rows.shape[0] != len(contexts)):
            raise ContextError(f"features must have one row per context, got shape {rows.shape}")
        out = np.empty((len(contexts), self.dim))
        for i, context in enumerate(contexts):
            out[i] = self.encode(context, None if rows is None else rows[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable config; :meth:`from_dict` inverts it."""
        return {"intercept": self.intercept, "fields": [f.to_dict() for f in self.fields]}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ContextSpec:
        """Build from a config mapping (``{"intercept": ..., "fields": [...]}``).

        Each field is a mapping with ``type`` (``numeric``, ``categorical``, ``hashed`` or
        ``feature_columns``) and the keyword arguments of that field class.

        Raises:
            PolicyConfigError: Unknown keys or types, or invalid values; the message says which.
        """
        if not isinstance(config, Mapping):
            raise PolicyConfigError(f"context config must be a mapping, got {config!r}")
        unknown = sorted(set(config) - {"intercept", "fields"})
        if unknown:
            raise PolicyConfigError(f"unknown context key(s) {unknown}; allowed: fields, intercept")
        built: list[Field] = []
        for i, item in enumerate(config.get("fields", [])):
            if not isinstance(item, Mapping) or "type" not in item:
                raise PolicyConfigError(f"context field #{i} must be a mapping with a 'type'")
            kind = item["type"]
            if kind not in _FIELD_TYPES:
                raise PolicyConfigError(
                    f"context field #{i} has unknown type {kind!r}; known: "
                    f"{', '.join(sorted(_FIELD_TYPES))}"
                )
            kwargs = {k: v for k, v in item.items() if k != "type"}
            allowed = [f.name for f in fields(_FIELD_TYPES[kind]) if f.init]
            extra = sorted(set(kwargs) - set(allowed))
            if extra:
                raise PolicyConfigError(
                    f"context field #{i} ({kind}) has unknown key(s) {extra}; allowed: "
                    f"type, {', '.join(allowed)}"
                )
            for key in ("vocabulary", "indices", "mean", "sd"):
                if isinstance(kwargs.get(key), list):
                    kwargs[key] = tuple(kwargs[key])
            if kind == "feature_columns":
                for key in ("mean", "sd"):
                    if kwargs.get(key) == ():
                        kwargs[key] = None
            try:
                built.append(_FIELD_TYPES[kind](**kwargs))
            except TypeError as err:  # a required key is missing
                raise PolicyConfigError(f"context field #{i} ({kind}): {err}") from None
        return cls(tuple(built), intercept=config.get("intercept", True))
