#!/usr/bin/env bash
# Seeds the fuzz corpora from the test data: the sample packages in XML and WBXML (as
# gwmo encodes them), a Gateway Bootstrap's TNDS, a package 0. Run from anywhere after
# `cargo build --release`; writes fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
gwmo=../target/release/gwmo
data=../crates/proto/tests/data
mkdir -p corpus/{xml_decode,wbxml_decode,tnds_parse,package0_decode,dm_endpoint}
for package in "$data"/package*.xml; do
    name=$(basename "$package" .xml)
    cp "$package" "corpus/xml_decode/$name.xml"
    "$gwmo" msg encode --wbxml "$package" -o "corpus/wbxml_decode/$name.wbxml"
    # dm_endpoint: the first byte picks the content type (0: XML, 1: WBXML).
    { printf '\x00'; cat "$package"; } > "corpus/dm_endpoint/$name-xml"
    { printf '\x01'; cat "corpus/wbxml_decode/$name.wbxml"; } > "corpus/dm_endpoint/$name-wbxml"
done
cat > corpus/tnds_parse/bootstrap.xml <<'TNDS'
<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD><Node><NodeName>gw-l</NodeName><Path>./DMAcc</Path><RTProperties><Format><node/></Format></RTProperties><Node><NodeName>ServerID</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>gw-l</Value></Node><Node><NodeName>AppAddr</NodeName><Node><NodeName>1</NodeName><Node><NodeName>Addr</NodeName><Value>http://127.0.0.1:8090/dm</Value></Node></Node></Node><Node><NodeName>Ext</NodeName><Node><NodeName>GwBoot</NodeName><Node><NodeName>LapseSecs</NodeName><RTProperties><Format><int/></Format></RTProperties><Value>600</Value></Node></Node></Node></Node></MgmtTree>
TNDS
# Package 0: a 16-byte digest, the 64-bit header (version 12, server-initiated,
# session 0x1234, server ID length 8), the server ID.
python3 - <<'PY'
header = (12 << 54) | (1 << 51) | (0x1234 << 8) | 8
open("corpus/package0_decode/notification", "wb").write(b"\0" * 16 + header.to_bytes(8, "big") + b"gwmo-dms")
PY
echo "corpora seeded: $(find corpus -type f | wc -l) files"
