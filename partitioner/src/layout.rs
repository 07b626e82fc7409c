//! Where a data directory keeps what. The czar, the workers and the loader all read and write these places; this is
//! the one module that spells them (names only: it does no I/O).
//!
//! ```text
//! DATA/meta/                                     metadata store: table records, secondary index (czar, loader)
//! DATA/staging/                                  loads being built; invisible until published (loader)
//! DATA/incoming/SESSION/                         inputs uploaded for `skyshard load` (czar)
//! DATA/jobs/                                     async jobs and their results (the platform)
//! DATA/cluster/workers.json                     the czar's members (added, draining, left)
//! DATA/files/NAME/                               a user's (or group_NAME's) file space, served over WebDAV
//! DATA/usertables/grants.json                    who each user table is shared with
//! DATA/usertables/templates/SCHEMA.TABLE.parquet the declared columns of a user table (no rows)
//! DATA/tables/SCHEMA.TABLE/LOAD/chunks/UNIQ.parquet          a chunk's own rows, sorted by `_hpx29`
//! DATA/tables/SCHEMA.TABLE/LOAD/chunks/UNIQ.overlap.parquet  its neighbours' rows within the overlap radius
//! DATA/tables/SCHEMA.TABLE/LOAD/chunks/orphans.parquet       a child's rows without a director object (chunk 0)
//! DATA/tables/SCHEMA.TABLE/LOAD/replicated/NAME.parquet      a replicated table, on every worker
//! ```

use std::path::{Path, PathBuf};

/// The hidden column of chunk files: the nested HEALPix index at depth 29, the sort key of a chunk's rows.
pub const INDEX_COLUMN: &str = "_hpx29";
/// The sub-directory of a load holding chunk files.
pub const CHUNKS: &str = "chunks";
/// The sub-directory of a load holding a replicated table's files.
pub const REPLICATED: &str = "replicated";
/// A child table's rows without a director object, read as chunk [`ORPHANS_CHUNK`].
pub const ORPHANS_FILE: &str = "orphans.parquet";
/// The pseudo-chunk of a child table's orphans (no HEALPix cell has NUNIQ 0).
pub const ORPHANS_CHUNK: u64 = 0;

pub fn meta_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("meta")
}

pub fn staging_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("staging")
}

pub fn incoming_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("incoming")
}

pub fn jobs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("jobs")
}

/// The czar's members as its healer keeps them: `DATA/cluster/workers.json`.
pub fn members_file(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster").join("workers.json")
}

/// The image archive's files, a folder per collection: `DATA/images/COLLECTION/OBS_ID.fits`.
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

/// Every user's and group's file space: `DATA/files`.
pub fn files_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("files")
}

/// Where user tables keep what the catalog does not: `DATA/usertables` (grants, templates).
pub fn user_tables_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("usertables")
}

/// Who user tables are shared with: `DATA/usertables/grants.json`.
pub fn grants_file(data_dir: &Path) -> PathBuf {
    user_tables_dir(data_dir).join("grants.json")
}

/// The declared columns of a user table (an empty Parquet file): `DATA/usertables/templates/SCHEMA.TABLE.parquet`.
pub fn template_file(data_dir: &Path, table: &str) -> PathBuf {
    user_tables_dir(data_dir)
        .join("templates")
        .join(format!("{table}.parquet"))
}

pub fn tables_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tables")
}

/// Every load of a table: `DATA/tables/SCHEMA.TABLE`.
pub fn table_dir(data_dir: &Path, table: &str) -> PathBuf {
    tables_dir(data_dir).join(table)
}

/// One load of a table: `DATA/tables/SCHEMA.TABLE/LOAD`.
pub fn load_dir(data_dir: &Path, table: &str, load: &str) -> PathBuf {
    table_dir(data_dir, table).join(load)
}

/// The file of a chunk's own rows (chunk [`ORPHANS_CHUNK`]: the orphans file).
pub fn chunk_file(chunk: u64) -> String {
    if chunk == ORPHANS_CHUNK {
        ORPHANS_FILE.to_string()
    } else {
        format!("{chunk}.parquet")
    }
}

/// The file of a chunk's overlap rows.
pub fn overlap_file(chunk: u64) -> String {
    format!("{chunk}.overlap.parquet")
}

/// What a file in a load's `chunks/` directory holds: (chunk, overlap file?); None for anything else.
pub fn parse_chunk_file(name: &str) -> Option<(u64, bool)> {
    if name == ORPHANS_FILE {
        return Some((ORPHANS_CHUNK, false));
    }
    let stem = name.strip_suffix(".parquet")?;
    match stem.strip_suffix(".overlap") {
        Some(chunk) => Some((chunk.parse().ok()?, true)),
        None => Some((stem.parse().ok()?, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_file_names_round_trip() {
        for chunk in [ORPHANS_CHUNK, 4, 1234567] {
            assert_eq!(parse_chunk_file(&chunk_file(chunk)), Some((chunk, false)));
        }
        assert_eq!(parse_chunk_file(&overlap_file(77)), Some((77, true)));
        assert_eq!(parse_chunk_file("part-0.parquet"), None);
        assert_eq!(parse_chunk_file("12.parquet.part"), None);
    }
}
