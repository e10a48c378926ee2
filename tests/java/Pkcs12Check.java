import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.Key;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.Collections;
import java.util.List;

/**
 * Loads a PKCS12 file the way a Java application would, and says what is inside.
 *
 * <pre>
 * java Pkcs12Check keystore   FILE PASSWORD_FILE   # loads; lists every entry
 * java Pkcs12Check truststore FILE PASSWORD_FILE   # also requires a trusted-cert entry
 * </pre>
 *
 * The password file is read as UTF-8; one trailing newline is dropped; an empty file
 * means the empty password. Output, one line per entry, tab-separated:
 *
 * <pre>
 * entry	ALIAS	key	ALGORITHM	CHAIN_LENGTH	SUBJECT
 * entry	ALIAS	trusted-cert	-	1	SUBJECT
 * </pre>
 *
 * On failure: "error	EXCEPTION_CLASS	MESSAGE / caused by ..." on stderr, exit status 1
 * (2 for usage). Note: Java 17 decrypts PKCS12 bags only with ASCII passwords; others
 * fail with "keystore password was incorrect / caused by ... Password is not ASCII".
 */
public final class Pkcs12Check {
    private Pkcs12Check() {}

    public static void main(String[] args) {
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        PrintStream err = new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8);
        if (args.length != 3 || !(args[0].equals("keystore") || args[0].equals("truststore"))) {
            err.println("usage: java Pkcs12Check keystore|truststore FILE PASSWORD_FILE");
            System.exit(2);
        }
        try {
            char[] password = readPassword(Path.of(args[2]));
            KeyStore store = KeyStore.getInstance("PKCS12");
            try (InputStream in = Files.newInputStream(Path.of(args[1]))) {
                store.load(in, password);
            }
            int trusted = 0;
            List<String> aliases = Collections.list(store.aliases());
            Collections.sort(aliases);
            for (String alias : aliases) {
                if (store.isKeyEntry(alias)) {
                    Key key = store.getKey(alias, password);
                    Certificate[] chain = store.getCertificateChain(alias);
                    int length = chain == null ? 0 : chain.length;
                    String subject = length == 0 ? "-" : subject(chain[0]);
                    out.println(String.join("\t", "entry", alias, "key", key.getAlgorithm(), Integer.toString(length), subject));
                } else if (store.isCertificateEntry(alias)) {
                    trusted++;
                    out.println(String.join("\t", "entry", alias, "trusted-cert", "-", "1", subject(store.getCertificate(alias))));
                } else {
                    out.println(String.join("\t", "entry", alias, "other", "-", "0", "-"));
                }
            }
            if (args[0].equals("truststore") && trusted == 0) {
                err.println("error\tNoTrustedCertificates\tthe truststore holds no trusted-cert entry");
                System.exit(1);
            }
        } catch (Exception e) {
            err.println("error\t" + e.getClass().getName() + "\t" + describe(e));
            System.exit(1);
        }
    }

    /** The message of the exception and of every cause: Java hides the useful part in causes. */
    private static String describe(Throwable error) {
        StringBuilder text = new StringBuilder(String.valueOf(error.getMessage()));
        for (Throwable cause = error.getCause(); cause != null; cause = cause.getCause()) {
            text.append(" / caused by ").append(cause.getClass().getName()).append(": ").append(cause.getMessage());
        }
        return text.toString().replace('\n', ' ').replace('\t', ' ');
    }

    private static char[] readPassword(Path file) throws java.io.IOException {
        String text = Files.readString(file, StandardCharsets.UTF_8);
        if (text.endsWith("\n")) {
            text = text.substring(0, text.length() - 1);
        }
        if (text.endsWith("\r")) {
            text = text.substring(0, text.length() - 1);
        }
        return text.toCharArray();
    }

    private static String subject(Certificate certificate) {
        if (certificate instanceof X509Certificate x509) {
            return x509.getSubjectX500Principal().getName();
        }
        return certificate.getType();
    }
}
