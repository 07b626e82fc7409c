//! HATS catalogs in (`skyshard ingest --format hats --input DIR`): a HATS catalog (HEALPix-partitioned Parquet, as
//! `hats-import` and lsdb's `to_hats` write it) read as it is. Its partitions become the table's chunks (a HATS
//! partition `Norder=K/Npix=N` is the NUNIQ cell skyshard's chunk ids name), the sky it does not cover is filled
//! with the fewest cells that do ([`ChunkMap::covering`]), and its files are the load's input: one pass, no chunk map
//! of its own. Its position columns come from its properties (`hats_col_ra`, `hats_col_dec`) unless given. Its margin
//! is not read: the overlap of skyshard's own choosing (`--overlap-arcsec`) is computed from the rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use partitioner::{ChunkId, ChunkMap};

use crate::error::{LoaderError, Result, io};

/// What a HATS catalog directory holds.
#[derive(Debug)]
pub struct HatsCatalog {
    /// The catalog's own directory (a collection's primary table).
    pub dir: PathBuf,
    pub ra: String,
    pub dec: String,
    /// Its partitions, as cells.
    pub cells: Vec<ChunkId>,
    /// Their files, in partition order.
    pub files: Vec<PathBuf>,
}

impl HatsCatalog {
    /// The chunk map that keeps the catalog's partitioning.
    pub fn map(&self) -> Result<ChunkMap> {
        ChunkMap::covering(self.cells.clone()).map_err(|e| self.bad(&format!("its partitions: {e}")))
    }

    fn bad(&self, problem: &str) -> LoaderError {
        bad(&self.dir, problem)
    }
}

fn bad(dir: &Path, problem: &str) -> LoaderError {
    LoaderError::Hats {
        path: dir.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// The key=value lines of a Java properties file (comments and blank lines left out; the forms HATS writes).
fn properties(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let at = l.find(['=', ':'])?;
            Some((l[..at].trim().to_string(), l[at + 1..].trim().to_string()))
        })
        .collect())
}

/// The catalog at `dir`: a catalog directory, or a collection whose primary table is one.
pub fn open(dir: &Path) -> Result<HatsCatalog> {
    if !dir.is_dir() {
        return Err(bad(dir, "not a directory: give the HATS catalog's (or collection's) directory"));
    }
    let mut dir = dir.to_path_buf();
    let collection = dir.join("collection.properties");
    if collection.is_file() {
        let props = properties(&collection)?;
        let primary = props
            .get("hats_primary_table_url")
            .ok_or_else(|| bad(&dir, "collection.properties names no hats_primary_table_url"))?;
        // A directory of the collection's own, never a path out of it or a URL.
        if primary.is_empty()
            || primary.contains("://")
            || Path::new(primary).components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(bad(&dir, &format!("hats_primary_table_url {primary:?} is not a directory inside the collection")));
        }
        dir = dir.join(primary);
    }
    let props_path = ["hats.properties", "properties"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| bad(&dir, "no hats.properties (or properties): not a HATS catalog"))?;
    let props = properties(&props_path)?;
    match props.get("dataproduct_type").map(String::as_str) {
        Some("object" | "source") | None => {}
        Some(other) => {
            return Err(bad(
                &dir,
                &format!("its dataproduct_type is {other}: only object and source catalogs load as tables (a margin is recomputed from the rows)"),
            ));
        }
    }
    let column = |key: &str| {
        props
            .get(key)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| bad(&dir, &format!("its properties name no {key}")))
    };
    let (ra, dec) = (column("hats_col_ra")?, column("hats_col_dec")?);
    let suffix = props
        .get("hats_npix_suffix")
        .cloned()
        .unwrap_or_else(|| ".parquet".to_string());
    let cells = partitions(&dir)?;
    let mut files = Vec::new();
    for c in &cells {
        let base = dir
            .join("dataset")
            .join(format!("Norder={}", c.depth()))
            .join(format!("Dir={}", c.hash() / 10_000 * 10_000));
        if suffix == "/" {
            // One directory of files per partition.
            let d = base.join(format!("Npix={}", c.hash()));
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&d)
                .map_err(io(&d))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            let f = base.join(format!("Npix={}{suffix}", c.hash()));
            if !f.is_file() {
                return Err(bad(&dir, &format!("partition Norder={} Npix={} has no file {}", c.depth(), c.hash(), f.display())));
            }
            files.push(f);
        }
    }
    if files.is_empty() {
        return Err(bad(&dir, "it has no partitions"));
    }
    Ok(HatsCatalog {
        dir,
        ra,
        dec,
        cells,
        files,
    })
}

/// The partitions `partition_info.csv` lists (its `Norder` and `Npix` columns), or, without one, those the
/// dataset's `Norder=K/Dir=D/Npix=N` paths name.
fn partitions(dir: &Path) -> Result<Vec<ChunkId>> {
    let cell = |order: &str, npix: &str| -> Result<ChunkId> {
        let (o, n): (u8, u64) = match (order.trim().parse(), npix.trim().parse()) {
            (Ok(o), Ok(n)) => (o, n),
            _ => return Err(bad(dir, &format!("partition Norder={order} Npix={npix} is not two numbers"))),
        };
        if o > partitioner::chunk::MAX_DEPTH || n >= 12u64 << (2 * o as u32) {
            return Err(bad(dir, &format!("partition Norder={o} Npix={n} is not a HEALPix cell")));
        }
        Ok(ChunkId::new(o, n))
    };
    let info = dir.join("partition_info.csv");
    let mut cells = Vec::new();
    if info.is_file() {
        let text = std::fs::read_to_string(&info).map_err(io(&info))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').map(str::trim).collect();
        let at = |name: &str| {
            header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| bad(dir, &format!("partition_info.csv has no {name} column")))
        };
        let (o, n) = (at("Norder")?, at("Npix")?);
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            match (fields.get(o), fields.get(n)) {
                (Some(order), Some(npix)) => cells.push(cell(order, npix)?),
                _ => return Err(bad(dir, &format!("partition_info.csv line {line:?} is short"))),
            }
        }
    } else {
        let dataset = dir.join("dataset");
        for order_dir in read_dir_sorted(&dataset)? {
            let Some(order) = name_value(&order_dir, "Norder=") else { continue };
            for d in read_dir_sorted(&order_dir)? {
                if name_value(&d, "Dir=").is_none() {
                    continue;
                }
                for f in read_dir_sorted(&d)? {
                    let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if let Some(rest) = name.strip_prefix("Npix=") {
                        let npix: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        cells.push(cell(&order, &npix)?);
                    }
                }
            }
        }
    }
    cells.sort();
    cells.dedup();
    Ok(cells)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io(dir))?.flatten().map(|e| e.path()).collect();
    v.sort();
    Ok(v)
}

fn name_value(path: &Path, prefix: &str) -> Option<String> {
    path.file_name()?.to_str()?.strip_prefix(prefix).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_collection_leads_to_its_catalog_and_its_partitions_to_their_files() {
        let root = std::env::temp_dir().join(format!("skyshard-hats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(&root.join("collection.properties"), "obs_collection=c\nhats_primary_table_url=cat\n");
        write(&root.join("cat/hats.properties"), "# x\ndataproduct_type=object\nhats_col_ra=RA\nhats_col_dec = DEC\n");
        write(&root.join("cat/partition_info.csv"), "Norder,Npix\n1,5\n3,121\n");
        write(&root.join("cat/dataset/Norder=1/Dir=0/Npix=5.parquet"), "");
        write(&root.join("cat/dataset/Norder=3/Dir=0/Npix=121.parquet"), "");
        let cat = open(&root).unwrap();
        assert_eq!((cat.ra.as_str(), cat.dec.as_str()), ("RA", "DEC"));
        assert_eq!(cat.cells, vec![ChunkId::new(1, 5), ChunkId::new(3, 121)]);
        assert!(cat.files[1].ends_with("cat/dataset/Norder=3/Dir=0/Npix=121.parquet"));
        assert!(cat.map().unwrap().chunks().contains(&ChunkId::new(3, 121)));
        // A listed partition without its file is named.
        write(&root.join("cat/partition_info.csv"), "Norder,Npix\n1,5\n2,40\n");
        let e = open(&root).unwrap_err().to_string();
        assert!(e.contains("Norder=2 Npix=40 has no file"), "{e}");
        // A margin is not a table; a primary table outside the collection is refused.
        write(&root.join("cat/hats.properties"), "dataproduct_type=margin\nhats_col_ra=ra\nhats_col_dec=dec\n");
        assert!(open(&root).unwrap_err().to_string().contains("dataproduct_type is margin"));
        write(&root.join("collection.properties"), "hats_primary_table_url=../elsewhere\n");
        assert!(open(&root).unwrap_err().to_string().contains("not a directory inside the collection"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
