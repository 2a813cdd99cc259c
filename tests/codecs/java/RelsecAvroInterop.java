// Java's Apache Avro reading and writing relsec's records, for tests/codecs/test_java_interop.py.
//
// Run as a single-file source program (Java 11+), with Apache Avro on the class path:
//
//   java -cp 'LIBS/*' tests/codecs/java/RelsecAvroInterop.java fingerprints schemas
//   java -cp 'LIBS/*' tests/codecs/java/RelsecAvroInterop.java roundtrip schemas < hex-lines
//
// fingerprints: one line per schema version, "name current hex" then "name vN hex" for each
//   kept older version (schemas/previous/name.vN.avsc, oldest first): the CRC-64-AVRO
//   fingerprint of the schema's Parsing Canonical Form as Java's SchemaNormalization
//   computes it, little-endian.
// roundtrip: for each input line (a single-object record in hex), decode it with
//   BinaryMessageDecoder (current schema as reader, every kept older one added), and print
//   "kind<TAB>record as JSON<TAB>the record re-encoded by BinaryMessageEncoder, in hex",
//   or "ERROR<TAB>exception class<TAB>message".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

public class RelsecAvroInterop {
    static final String[] NAMES = {"deploy", "incident", "security_flag", "alert", "dead_letter"};

    static Schema load(Path path) throws Exception {
        return new Schema.Parser().parse(Files.readString(path, StandardCharsets.UTF_8));
    }

    static String fingerprintHex(Schema schema) {
        long fp = SchemaNormalization.parsingFingerprint64(schema);
        byte[] le = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(fp).array();
        return HexFormat.of().formatHex(le);
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[1]);
        Map<String, Schema> current = new LinkedHashMap<>();
        Map<String, TreeMap<Integer, Schema>> older = new LinkedHashMap<>();
        for (String name : NAMES) {
            current.put(name, load(dir.resolve(name + ".avsc")));
            TreeMap<Integer, Schema> versions = new TreeMap<>();
            List<Path> files = new ArrayList<>();
            try (var listing = Files.list(dir.resolve("previous"))) {
                listing.forEach(files::add);
            }
            for (Path file : files) {
                String fileName = file.getFileName().toString();
                String prefix = name + ".v";
                if (fileName.startsWith(prefix) && fileName.endsWith(".avsc")) {
                    String number = fileName.substring(prefix.length(), fileName.length() - 5);
                    if (number.chars().allMatch(Character::isDigit) && !number.isEmpty()) {
                        versions.put(Integer.parseInt(number), load(file));
                    }
                }
            }
            older.put(name, versions);
        }
        if (args[0].equals("fingerprints")) {
            for (String name : NAMES) {
                System.out.println(name + " current " + fingerprintHex(current.get(name)));
                for (Map.Entry<Integer, Schema> e : older.get(name).entrySet()) {
                    System.out.println(name + " v" + e.getKey() + " " + fingerprintHex(e.getValue()));
                }
            }
            return;
        }
        Map<String, String> kindByFingerprint = new LinkedHashMap<>();
        Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new LinkedHashMap<>();
        Map<String, BinaryMessageEncoder<GenericRecord>> encoders = new LinkedHashMap<>();
        for (String name : NAMES) {
            kindByFingerprint.put(fingerprintHex(current.get(name)), name);
            BinaryMessageDecoder<GenericRecord> decoder =
                new BinaryMessageDecoder<>(GenericData.get(), current.get(name));
            for (Schema schema : older.get(name).values()) {
                kindByFingerprint.put(fingerprintHex(schema), name);
                decoder.addSchema(schema);
            }
            decoders.put(name, decoder);
            encoders.put(name, new BinaryMessageEncoder<>(GenericData.get(), current.get(name)));
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.strip();
            if (line.isEmpty()) {
                continue;
            }
            try {
                byte[] raw = HexFormat.of().parseHex(line);
                String fp = raw.length >= 10 ? HexFormat.of().formatHex(raw, 2, 10) : "";
                // Unknown fingerprints go to the first decoder, which must refuse them.
                String kind = kindByFingerprint.getOrDefault(fp, NAMES[0]);
                GenericRecord record = decoders.get(kind).decode(raw);
                ByteBuffer again = encoders.get(kind).encode(record);
                byte[] out = new byte[again.remaining()];
                again.get(out);
                System.out.println(kind + "\t" + GenericData.get().toString(record) + "\t"
                    + HexFormat.of().formatHex(out));
            } catch (Exception e) {
                System.out.println("ERROR\t" + e.getClass().getName() + "\t"
                    + String.valueOf(e.getMessage()).replace('\n', ' ').replace('\t', ' '));
            }
        }
    }
}
