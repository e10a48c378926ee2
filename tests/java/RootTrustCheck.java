import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.security.KeyStore;
import java.security.cert.CertPath;
import java.security.cert.CertPathBuilder;
import java.security.cert.CertStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.PKIXCertPathBuilderResult;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.util.Arrays;
import java.util.List;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * A Java 17 TLS client that trusts only the root certificates of one PEM file: it
 * completes a handshake with SNI and host-name verification (the JDK's default PKIX
 * trust manager), then builds the path from the served chain to a trusted root with
 * CertPathBuilder, as that trust manager does, and prints it.
 *
 * Usage: java RootTrustCheck HOST PORT SERVER_NAME TRUSTED_ROOTS_PEM
 * Prints "served\tSUBJECT" per served certificate, then "path\tSUBJECT\tISSUER" per
 * certificate of the built path (leaf first) and "anchor\tSUBJECT". Exits 1 with the
 * exception on standard error when the handshake or the path fails.
 */
public final class RootTrustCheck {
    public static void main(String[] args) throws Exception {
        try {
            KeyStore trust = KeyStore.getInstance("PKCS12");
            trust.load(null, null);
            CertificateFactory factory = CertificateFactory.getInstance("X.509");
            try (InputStream in = new FileInputStream(args[3])) {
                int index = 0;
                for (Certificate root : factory.generateCertificates(in)) {
                    trust.setCertificateEntry("root-" + index++, root);
                }
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
            tmf.init(trust);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(null, tmf.getTrustManagers(), null);
            Socket plain = new Socket();
            plain.connect(new InetSocketAddress(args[0], Integer.parseInt(args[1])), 10000);
            plain.setSoTimeout(10000);
            X509Certificate[] served;
            try (SSLSocket socket =
                    (SSLSocket) context.getSocketFactory().createSocket(plain, args[2], 443, true)) {
                SSLParameters parameters = socket.getSSLParameters();
                parameters.setServerNames(List.of(new SNIHostName(args[2])));
                parameters.setEndpointIdentificationAlgorithm("HTTPS");
                socket.setSSLParameters(parameters);
                socket.startHandshake();
                Certificate[] peer = socket.getSession().getPeerCertificates();
                served = Arrays.copyOf(peer, peer.length, X509Certificate[].class);
            }
            for (X509Certificate certificate : served) {
                System.out.println("served\t" + certificate.getSubjectX500Principal().getName());
            }
            X509CertSelector target = new X509CertSelector();
            target.setCertificate(served[0]);
            PKIXBuilderParameters build = new PKIXBuilderParameters(trust, target);
            build.setRevocationEnabled(false);
            build.addCertStore(
                CertStore.getInstance(
                    "Collection", new CollectionCertStoreParameters(Arrays.asList(served))));
            PKIXCertPathBuilderResult result =
                (PKIXCertPathBuilderResult) CertPathBuilder.getInstance("PKIX").build(build);
            CertPath path = result.getCertPath();
            for (Certificate certificate : path.getCertificates()) {
                X509Certificate x509 = (X509Certificate) certificate;
                System.out.println(
                    "path\t" + x509.getSubjectX500Principal().getName()
                        + "\t" + x509.getIssuerX500Principal().getName());
            }
            System.out.println(
                "anchor\t"
                    + result.getTrustAnchor().getTrustedCert().getSubjectX500Principal().getName());
        } catch (Exception e) {
            System.err.println("error\t" + e);
            System.exit(1);
        }
    }
}
