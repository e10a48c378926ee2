import java.io.FileInputStream;
import java.io.InputStream;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * A Java 17 runtime as certward's bundle serves it: trust the bundle's truststore.p12,
 * present a client certificate from a bundle .p12, GET an https URL, print the body.
 *
 * Usage: java TlsClientCheck URL TRUSTSTORE TRUSTSTORE_PASSWORD_FILE KEYSTORE KEYSTORE_PASSWORD_FILE
 * Exits 1 with the exception on standard error when anything fails.
 */
public final class TlsClientCheck {
    public static void main(String[] args) throws Exception {
        try {
            KeyStore trust = load(args[1], password(args[2]));
            TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(trust);
            char[] keyPassword = password(args[4]);
            KeyStore keys = load(args[3], keyPassword);
            KeyManagerFactory kmf =
                KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(keys, keyPassword);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
            HttpsURLConnection connection = (HttpsURLConnection) new URL(args[0]).openConnection();
            connection.setSSLSocketFactory(context.getSocketFactory());
            connection.setConnectTimeout(10000);
            connection.setReadTimeout(10000);
            try (InputStream body = connection.getInputStream()) {
                System.out.println(new String(body.readAllBytes(), StandardCharsets.UTF_8));
            }
        } catch (Exception e) {
            System.err.println("error\t" + e);
            System.exit(1);
        }
    }

    private static char[] password(String file) throws Exception {
        return Files.readString(Path.of(file), StandardCharsets.UTF_8).strip().toCharArray();
    }

    private static KeyStore load(String file, char[] password) throws Exception {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(file)) {
            store.load(in, password);
        }
        return store;
    }
}
