//! VOTable (IVOA VOTable 1.4), the IVOA's XML table format, to and from Arrow. Reading ([`VoTableReader`]) serves
//! the loader's VOTable inputs and TAP uploads; [`write`] holds what the result writers of the TAP service build on.

mod read;
pub mod write;

pub use read::{Result, VoTableError, VoTableReader, read_bytes};

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
    use base64::Engine as _;

    const TABLEDATA: &str = r#"<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/>
<TABLE>
<FIELD name="id" datatype="long" ucd="meta.id"><VALUES null="-1"/></FIELD>
<FIELD name="ra" datatype="double" unit="deg" ucd="pos.eq.ra"><DESCRIPTION>Right ascension &amp; more</DESCRIPTION></FIELD>
<FIELD name="n" datatype="int"/>
<FIELD name="name" datatype="char" arraysize="*"/>
<FIELD name="pos" datatype="double" arraysize="2" xtype="point"/>
<FIELD name="ok" datatype="boolean"/>
<DATA><TABLEDATA>
<TR><TD>1</TD><TD>10.5</TD><TD>3</TD><TD>a &lt;b&gt;</TD><TD>1 2</TD><TD>T</TD></TR>
<TR><TD>-1</TD><TD></TD><TD/><TD></TD><TD></TD><TD>?</TD></TR>
<TR><TD>3</TD><TD>NaN</TD><TD>0x10</TD><TD>z</TD><TD>3 4.5</TD><TD>false</TD></TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"#;

    #[test]
    fn tabledata_types_nulls_arrays_and_metadata() {
        let (schema, batches) = read_bytes(TABLEDATA.as_bytes()).unwrap();
        assert_eq!(schema.fields().len(), 6);
        assert_eq!(schema.field(1).metadata()["unit"], "deg");
        assert_eq!(
            schema.field(1).metadata()["description"],
            "Right ascension & more"
        );
        assert_eq!(schema.field(4).metadata()["xtype"], "point");
        assert!(matches!(
            schema.field(4).data_type(),
            DataType::FixedSizeList(_, 2)
        ));
        let b = &batches[0];
        assert_eq!(b.num_rows(), 3);
        let id = b.column(0).as_primitive::<Int64Type>();
        assert!(id.is_null(1) && id.value(2) == 3);
        let ra = b.column(1).as_primitive::<Float64Type>();
        assert!(ra.value(0) == 10.5 && ra.is_null(1) && ra.is_null(2));
        assert_eq!(b.column(2).as_primitive::<Int32Type>().value(2), 16);
        assert_eq!(b.column(3).as_string::<i32>().value(0), "a <b>");
        assert!(b.column(3).is_null(1));
        let pos = b.column(4).as_fixed_size_list();
        assert!(pos.is_null(1));
        assert_eq!(
            pos.value(2).as_primitive::<Float64Type>().values(),
            &[3.0, 4.5]
        );
        assert!(
            b.column(5).as_boolean().value(0)
                && b.column(5).is_null(1)
                && !b.column(5).as_boolean().value(2)
        );
    }

    #[test]
    fn bad_values_name_row_and_field() {
        let bad = TABLEDATA.replace("<TD>0x10</TD>", "<TD>ten</TD>");
        let err = read_bytes(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("row 3") && err.contains("field n"), "{err}");
        let short = TABLEDATA.replace("<TD>?</TD>", "");
        let err = read_bytes(short.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("row 2") && err.contains("5 cells"), "{err}");
        assert!(read_bytes(b"<html>nope</html>").is_err());
        assert!(read_bytes(&TABLEDATA.as_bytes()[..600]).is_err());
    }

    #[test]
    fn binary2_with_null_flags_and_variable_arrays() {
        // Fields: id int, mag float, name char(*), v double(*)
        let mut raw = Vec::new();
        for (i, null_mag) in [(1i32, false), (2, true)] {
            raw.push(if null_mag { 0b0100_0000 } else { 0 });
            raw.extend_from_slice(&i.to_be_bytes());
            raw.extend_from_slice(&(i as f32 * 1.5).to_be_bytes());
            let name = format!("s{i}");
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(i as u32).to_be_bytes());
            for k in 0..i {
                raw.extend_from_slice(&(k as f64).to_be_bytes());
            }
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        let doc = format!(
            r#"<VOTABLE><RESOURCE><TABLE><FIELD name="id" datatype="int"/><FIELD name="mag" datatype="float"/>
<FIELD name="name" datatype="char" arraysize="*"/><FIELD name="v" datatype="double" arraysize="*"/>
<DATA><BINARY2><STREAM encoding="base64">{}
{}</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>"#,
            &b64[..8],
            &b64[8..]
        );
        let (_, batches) = read_bytes(doc.as_bytes()).unwrap();
        let b = &batches[0];
        assert_eq!(b.num_rows(), 2);
        assert!(!b.column(1).is_null(0) && b.column(1).is_null(1));
        assert_eq!(b.column(2).as_string::<i32>().value(1), "s2");
        assert_eq!(b.column(3).as_list::<i32>().value(1).len(), 2);
        // A truncated stream is an error naming the row.
        let cut = base64::engine::general_purpose::STANDARD.encode(&raw[..raw.len() - 3]);
        let doc = doc.replace(&b64[..8], "").replace(&b64[8..], &cut);
        let err = read_bytes(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("row 2"), "{err}");
    }

    #[test]
    fn declared_shapes_cannot_overflow_or_reserve_memory() {
        let field = |arraysize: &str| {
            format!(
                r#"<VOTABLE><RESOURCE><TABLE><FIELD name="a" datatype="double" arraysize="{arraysize}"/>
<DATA><BINARY><STREAM encoding="base64">AAAAAAAAAAA=</STREAM></BINARY></DATA></TABLE></RESOURCE></VOTABLE>"#
            )
        };
        for shape in ["4294967296x4294967296", "18446744073709551615x2", "2000000"] {
            let err = read_bytes(field(shape).as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains("elements one value may have"),
                "{shape}: {err}"
            );
        }
        // A variable-length value announcing 2^32-1 doubles in an 8-byte stream: a clean error, nothing reserved.
        let doc = field("*").replace("AAAAAAAAAAA=", "/////wAAAAA=");
        let err = read_bytes(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("ends inside row 1"), "{err}");
        // The largest shape allowed still reads.
        assert!(read_bytes(field("1x1").as_bytes()).is_ok());
    }
}
