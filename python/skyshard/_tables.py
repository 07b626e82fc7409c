"""What `Client.save_table` sends: a pandas DataFrame, a pyarrow Table or an lsdb Catalog as one Arrow table in the
types the service reads from Parquet, with the UCDs that make it a partitioned (director) table when asked."""

from __future__ import annotations

import pyarrow as pa

# What the service looks for to partition a user table like a catalog (platform/src/usertables/define.rs `kind_of`):
# a double with pos.eq.ra, one with pos.eq.dec and an integer with meta.id; `meta.main` picks among several.
ROLES = (("ra", "pos.eq.ra"), ("dec", "pos.eq.dec"), ("id", "meta.id"))


def is_lsdb_catalog(data) -> bool:
    return hasattr(data, "hc_structure") and hasattr(data, "compute")


def to_arrow(data, ra: str | None, dec: str | None, id: str | None) -> pa.Table:
    """`data` as an Arrow table ready to save; `ra`, `dec`, `id` name the columns to mark with their UCDs."""
    if is_lsdb_catalog(data):
        info = data.hc_structure.catalog_info
        ra = ra or info.ra_column
        dec = dec or info.dec_column
        frame = data.compute()
        # The rows' HEALPix index is the catalog's, not data: the service keeps its own.
        frame = frame.reset_index(drop=True).drop(columns=["_healpix_29"], errors="ignore")
        table = pa.Table.from_pandas(frame, preserve_index=False)
    elif isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif hasattr(data, "to_parquet") and hasattr(data, "columns"):
        # pandas (and pandas-like frames): the index is not a column; reset_index() first to keep it.
        table = pa.Table.from_pandas(data, preserve_index=False)
    else:
        raise TypeError(f"save_table takes a pandas DataFrame, a pyarrow Table or an lsdb Catalog, not "
                        f"{type(data).__name__}")
    table = _plain_types(table)
    return _mark(table, {"ra": ra, "dec": dec, "id": id})


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):
        return pa.string()
    if pa.types.is_large_binary(t) or getattr(pa.types, "is_binary_view", lambda _: False)(t):
        return pa.binary()
    return t


def _plain_types(table: pa.Table) -> pa.Table:
    """Dictionary, large and view string columns (pandas 3's strings arrive as large_string) as plain ones, and no
    schema-level metadata (a query result's QUERY_STATUS is not the saved table's); field metadata is kept."""
    fields = [f.with_type(_plain(f.type)) for f in table.schema]
    return table.cast(pa.schema(fields))


def _ucd_words(field: pa.Field) -> list[str]:
    raw = (field.metadata or {}).get(b"ucd", b"").decode()
    return [w for w in raw.split(";") if w]


def _with_ucd(field: pa.Field, words: list[str]) -> pa.Field:
    metadata = dict(field.metadata or {})
    if words:
        metadata[b"ucd"] = ";".join(words).encode()
    else:
        metadata.pop(b"ucd", None)
    return field.with_metadata(metadata)


def _mark(table: pa.Table, chosen: dict[str, str | None]) -> pa.Table:
    """Gives each named column its UCD (with meta.main, so the service picks it over any other column with the same
    UCD), in the type the service needs for the role."""
    names = {n.lower(): n for n in table.column_names}
    for role, ucd in ROLES:
        column = chosen.get(role)
        if column is None:
            continue
        name = names.get(column.lower())
        if name is None:
            raise ValueError(f"{role}={column!r}: no such column (columns: {', '.join(table.column_names)})")
        i = table.schema.get_field_index(name)
        field = table.schema.field(i)
        if role == "id":
            if not pa.types.is_integer(field.type):
                raise ValueError(f"id={column!r}: an id column holds integers, not {field.type}")
            if field.type not in (pa.int16(), pa.int32(), pa.int64()):
                field = field.with_type(pa.int64())
        else:
            if not pa.types.is_floating(field.type) and not pa.types.is_integer(field.type):
                raise ValueError(f"{role}={column!r}: a position is a number of degrees, not {field.type}")
            field = field.with_type(pa.float64())
        words = [w for w in _ucd_words(field) if w.lower() not in (ucd, "meta.main")]
        field = _with_ucd(field, [ucd, "meta.main", *words])
        schema = table.schema.set(i, field)
        # The other columns that say the same keep their UCD, without meta.main.
        for j, other in enumerate(schema):
            if j != i and ucd in [w.lower() for w in _ucd_words(other)]:
                schema = schema.set(j, _with_ucd(other, [w for w in _ucd_words(other) if w.lower() != "meta.main"]))
        table = table.cast(schema)
    return table
