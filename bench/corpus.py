#!/usr/bin/python3
"""bench/corpus.py -- write a deterministic, realistic ESP benchmark corpus.

    bench/corpus.py --out DIR [--n 10000] [--domains 200] [--seed 1]
                    [--nokey-share 0.02]

Writes DIR/msgs/m000001 ... (N messages), DIR/domains.txt (the customer
domains c001.bench.example ..., one a line), DIR/stats.txt (sizes and
header field counts) and DIR/params.txt (the arguments and VERSION).

Cache: when DIR/params.txt matches the request and every file is there,
prints "corpus: cached (DIR)" and exits 0 at once. Otherwise the corpus is
built from scratch in DIR.tmp and renamed to DIR only when complete, so a
killed run never leaves a half corpus that looks whole.

Deterministic: random.Random(seed) only, no clock, no hash(), no set
iteration; the same arguments give byte-identical files.

The messages are bulk mail as an ESP's outbound queue holds it: CRLF line
endings, 15-25 header fields (Received, List-Unsubscribe, Feedback-ID,
RFC 2047 subjects, folded fields), multipart/alternative text+HTML bodies
in quoted-printable or 7bit, some HTML-only or text-only, a few with a
base64 attachment. Sizes: ~15% near 2 KiB, ~76% spread over 5-30 KiB,
~8% near 80 KiB, ~1% near 400 KiB; median about 12 KiB. Senders follow a
Zipf law over the customer domains; --nokey-share of the messages come
from nokeyN.bench.example domains that are not in domains.txt.
See bench/corpus.md.
"""
import argparse
import base64
import binascii
import calendar
import html
import os
import random
import shutil
import sys
import textwrap
import time
import unicodedata

# Bump whenever the output for the same arguments changes: the cache
# (params.txt) then rebuilds old corpora instead of reusing them.
VERSION = "1"

ESP = "esp.example"
CUST_FMT = "c%03d.bench.example"
NOKEY_FMT = "nokey%d.bench.example"
NOKEY_DOMAINS = 5          # nokey1 .. nokey5.bench.example
ZIPF_S = 1.0               # message share of the k-th customer ~ 1/k^s
BASE_TS = calendar.timegm((2026, 11, 24, 9, 0, 0))   # first Date:
# size classes: (name, share of messages); "mid" takes the rest
CLASSES = (("small", 0.15), ("large", 0.08), ("huge", 0.01))
MEDIAN_OK = (10 * 1024, 14 * 1024)    # checked when n >= MEDIAN_MIN_N
MEDIAN_MIN_N = 1000
CORPUS_ENTRIES = ("msgs", "domains.txt", "stats.txt", "params.txt")

CRLF = "\r\n"

# --------------------------------------------------------------------------
# vocabulary (kept small; paragraphs are built once into pools)

WORDS = {
    "en": """the our new your this week season collection offer sale free
shipping order today now best price deal save more get shop discover explore
favourite favorite style comfort quality made with care from local makers
fresh arrivals limited edition exclusive members early access gift guide
ideas holiday weekend morning evening coffee tea kitchen garden home outdoor
travel adventure jacket boots shirt dress bag watch lamp chair table sofa
blanket pillow candle soap skincare routine recipe dinner lunch breakfast
healthy easy quick simple classic modern vintage handmade organic natural
sustainable recycled materials design team story behind every piece we love
you will find perfect fit size colour blue green red black white grey warm
cozy light bright bold minimal elegant durable waterproof lightweight
packable everyday essentials customers reviews rated stars back in stock
selling fast while supplies last ends sunday midnight code at checkout on
all orders over points rewards account update news announcement event
workshop webinar join us register seats available city store opening hours
online support help questions reply email happy to and for of in a to is
are it that as be can more about just like up out so what when how also
every their them these those we’re don’t you’ll it’s café crème — €25 £40
spring summer autumn winter""".split(),
    "de": """wir unsere neue Kollektion für Sie Angebot Angebote Rabatt Versand
kostenlos bestellen heute jetzt entdecken Qualität Frühling Sommer Herbst
Winter Größe Farbe Wochenende Geschenk Ideen Küche Garten Zuhause schön
günstig nachhaltig natürlich handgemacht regional frisch Brötchen Kaffee Tee
Rezept einfach schnell lecker Familie Freunde Überraschung über mit und oder
der die das ein eine ist sind bei auf zu im am nur noch bis zum zur Ihre
Ihren Ihrem Bestellung Lieferung Kunden Bewertungen Sterne wieder verfügbar
begrenzt exklusiv Mitglieder früher Zugang Gutschein Code Kasse alle ab Euro
Öffnungszeiten Filiale Veranstaltung Anmeldung Plätze Fragen Hilfe Team
freuen uns Ihnen gemütlich Jacke Schuhe Tasche Lampe Stuhl Tisch""".split(),
    "fr": """nous notre nouvelle collection pour vous offre offres remise
livraison gratuite commander aujourd’hui maintenant découvrir qualité
printemps été automne hiver taille couleur week-end cadeau idées cuisine
jardin maison élégant léger durable naturel fait main local frais café thé
recette facile rapide délicieux famille amis surprise avec et ou le la les
un une est sont chez sur à au aux dans que plus encore jusqu’à votre vos
commande clients avis étoiles de retour en stock limitée exclusive membres
accès anticipé code caisse toutes dès euros horaires boutique événement
inscription places questions aide équipe ravis très bientôt veste
chaussures sac lampe chaise table""".split(),
    "es": """nosotros nuestra nueva colección para usted oferta ofertas
descuento envío gratis pedir hoy ahora descubrir calidad primavera verano
otoño invierno talla color fin de semana regalo ideas cocina jardín hogar
elegante ligero duradero natural hecho a mano local fresco café té receta
fácil rápido delicioso familia amigos sorpresa con y o el la los las un una
es son en sobre al del que más todavía hasta tu tus pedido clientes
opiniones estrellas disponible otra vez limitada exclusiva miembros acceso
anticipado código caja todos desde euros horario tienda evento inscripción
plazas preguntas ayuda equipo encantados muy pronto mañana también chaqueta
zapatos bolso lámpara silla mesa""".split(),
}
LANG_WEIGHTS = (("en", 78), ("de", 9), ("fr", 7), ("es", 6))

SHOP_PARTS = {
    "en": (("Northwind", "Blue Harbor", "Maple & Pine", "Copper Kettle",
            "Silver Birch", "Red Fox", "Urban Nest", "Little Acorn",
            "Brightside", "Oak Street", "Golden Hour", "Wild Meadow",
            "Stone Bridge", "Evergreen", "Lakeside", "Hillcrest"),
           ("Outfitters", "Coffee Co.", "Home Goods", "Books", "Bakery",
            "Studio", "Supply", "Market", "Travel", "Fitness",
            "Garden Center", "Pet Shop", "Wine Club", "Bikes", "Kitchen",
            "Apparel")),
    "de": (("Bäckerei", "Gärtnerei", "Schuhhaus", "Weinhandlung",
            "Möbelhaus", "Buchhandlung", "Reisebüro", "Feinkost"),
           ("Müller", "Schäfer", "Köhler", "Großmann", "Brückner",
            "Lüdecke", "Sonnenschein", "Weiß")),
    "fr": (("Boulangerie", "Librairie", "Maison", "Atelier", "Épicerie",
            "Fromagerie", "Cave", "Pâtisserie"),
           ("Dupré", "Lefèvre", "Bélanger", "du Marché", "des Arts",
            "Hélène", "Mérignac", "Céleste")),
    "es": (("Panadería", "Librería", "Zapatería", "Viajes", "Bodega",
            "Ferretería", "Floristería", "Café"),
           ("Muñoz", "Peña", "Ibáñez", "del Sol", "Martínez", "Núñez",
            "La Estación", "Olivares")),
}

SUBJECTS = {
    "en": ("{shop}: {offer}", "{offer} - this week only", "{first}, {offer}",
           "{title} | {shop}", "Ends tonight: {offer}", "{shop} weekly: {title}",
           "Your {month} update from {shop}", "🎉 {offer}",
           "Last chance: {offer}", "New arrivals at {shop}: {title}",
           "[{shop}] Weekly digest #{num}", "Don’t miss out: {offer}",
           "{title}", "{first}, we picked these for you",
           "Your {month} newsletter: {title} and {offer} before the weekend "
           "is over"),
    "de": ("Unsere Angebote für Sie – {offer}", "Neu eingetroffen: {title}",
           "Ihr Wochenüberblick von {shop}", "{first}, {offer}",
           "Nur heute: Gratisversand für Bestellungen über 50 €"),
    "fr": ("Soldes d’été : {offer}", "Nouveautés de la semaine chez {shop}",
           "Votre récapitulatif de {month}", "{first}, {offer}",
           "Dernière chance : livraison offerte dès 40 €"),
    "es": ("¡Rebajas de invierno! {offer}", "Novedades de la semana en {shop}",
           "Tu resumen mensual de {shop}", "{first}, {offer}",
           "Último día: envío gratis en todos los pedidos"),
}
OFFERS = {
    "en": ("20% off everything this weekend", "free shipping on orders over $50",
           "up to 40% off winter essentials", "members save an extra 15%",
           "buy one, get one half price", "your exclusive early access code",
           "new colours just landed", "the gift guide is here"),
    "de": ("bis zu 30 % Rabatt", "Gratisversand ab 50 €", "10 € Gutschein für Sie",
           "exklusiv für Mitglieder", "die neue Frühjahrskollektion"),
    "fr": ("jusqu’à -50 % sur une sélection", "livraison offerte dès 40 €",
           "10 € offerts sur votre commande", "accès anticipé aux soldes"),
    "es": ("hasta un 40 % de descuento", "envío gratis desde 30 €",
           "10 € de regalo en tu pedido", "acceso anticipado a las rebajas"),
}
MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli",
           "August", "September", "Oktober", "November", "Dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet",
           "août", "septembre", "octobre", "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio",
           "agosto", "septiembre", "octubre", "noviembre", "diciembre"),
}
GREETING = {"en": "Hi {first},", "de": "Hallo {first},",
            "fr": "Bonjour {first},", "es": "Hola {first},"}
CTAS = {
    "en": ("Shop now", "Read more", "Discover the collection", "See all deals",
           "Book your seat", "View offer"),
    "de": ("Jetzt entdecken", "Mehr erfahren", "Zum Angebot", "Jetzt shoppen"),
    "fr": ("Découvrir", "En savoir plus", "Voir l’offre", "J’en profite"),
    "es": ("Comprar ahora", "Leer más", "Ver oferta", "Descúbrelo"),
}
FOOTER = {
    "en": ("You are receiving this email because you signed up at {domain}.",
           "Unsubscribe", "View in browser", "Update your preferences"),
    "de": ("Sie erhalten diese E-Mail, weil Sie sich auf {domain} angemeldet haben.",
           "Abmelden", "Im Browser ansehen", "Einstellungen ändern"),
    "fr": ("Vous recevez cet e-mail car vous êtes inscrit sur {domain}.",
           "Se désinscrire", "Voir dans le navigateur", "Gérer vos préférences"),
    "es": ("Recibes este correo porque te registraste en {domain}.",
           "Darse de baja", "Ver en el navegador", "Actualizar preferencias"),
}
ADDRESS = {
    "en": ("{num} {street} Street, {city}, {st} {zip}",
           ("Market", "Harbor", "Elm", "Union", "Mill", "Bridge", "Park"),
           ("Springfield", "Riverton", "Fairview", "Kingston", "Ashford")),
    "de": ("{street}straße {num}, {zip} {city}",
           ("Haupt", "Linden", "Garten", "Schiller", "Bahnhof", "Mühlen"),
           ("Berlin", "München", "Köln", "Düsseldorf", "Würzburg")),
    "fr": ("{num} rue {street}, {zip} {city}",
           ("de la Paix", "Victor-Hugo", "des Écoles", "du Général-Leclerc"),
           ("Paris", "Lyon", "Nîmes", "Orléans", "Besançon")),
    "es": ("Calle {street} {num}, {zip} {city}",
           ("Mayor", "del Carmen", "de Alcalá", "San Martín", "Real"),
           ("Madrid", "Sevilla", "Málaga", "Córdoba", "León")),
}
FIRST = ("james mary john patricia robert jennifer michael linda david "
         "elizabeth william barbara richard susan joseph jessica thomas sarah "
         "charles karen lukas anna jonas lea camille louis sofia mateo lucia "
         "noah emma liam olivia ava ethan mia").split()
LAST = ("smith johnson williams brown jones garcia miller davis rodriguez "
        "martinez wilson anderson taylor thomas moore martin jackson white "
        "schmidt schneider fischer weber dubois moreau laurent lopez sanchez "
        "perez gomez").split()
RCPT_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com",
                "inbox.example.net", "post.example.org", "webmail.example.com",
                "mx.example.net")

# the ASCII stand-ins used for 7bit text parts
ASCII_MAP = {ord("’"): "'", ord("—"): "--", ord("–"): "-", ord("€"): "EUR",
             ord("£"): "GBP", ord("¡"): "", ord("ß"): "ss", ord("©"): "(c)",
             ord("🎉"): "", ord("·"): "|"}

MAILERS = (
    # name, X-Mailer value (None: none sent), boundary style, Message-ID style
    ("phpmailer", "PHPMailer 6.9.1 (https://github.com/PHPMailer/PHPMailer)",
     "php", "hex"),
    ("javamail", None, "java", "java"),
    ("python", None, "python", "python"),
    ("espmail", "espmail/4.2.17 (+https://www.esp.example/mailer)", "esp", "esp"),
    ("dotnet", "Campaign Builder 11.3 (.NET)", "dotnet", "guid"),
)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
        "Nov", "Dec")
POSTFIX_ALNUM = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
EXIM_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --------------------------------------------------------------------------
# small helpers

def fmt_date(ts, tzmin, day2=False):
    """RFC 5322 date-time for UNIX time TS in a zone TZMIN minutes east."""
    t = time.gmtime(ts + tzmin * 60)
    a = abs(tzmin)
    return "%s, %s %s %04d %02d:%02d:%02d %s%02d%02d" % (
        DAYS[t.tm_wday], ("%02d" if day2 else "%d") % t.tm_mday,
        MONS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec,
        "-" if tzmin < 0 else "+", a // 60, a % 60)


def ew_b(s):
    """S as RFC 2047 B encoded-words (each at most 68 characters)."""
    words, cur, n = [], [], 0
    for ch in s:
        b = len(ch.encode())
        if n + b > 42:
            words.append("".join(cur))
            cur, n = [], 0
        cur.append(ch)
        n += b
    words.append("".join(cur))
    return ["=?UTF-8?B?%s?=" % base64.b64encode(w.encode()).decode()
            for w in words]


Q_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789!*+-/")


def ew_q(s):
    """S as RFC 2047 Q encoded-words (phrase-safe; at most 62 characters)."""
    words, cur, n = [], [], 0
    for ch in s:
        if ch in Q_SAFE:
            e = ch
        elif ch == " ":
            e = "_"
        else:
            e = "".join("=%02X" % b for b in ch.encode())
        if n + len(e) > 50:
            words.append("".join(cur))
            cur, n = [], 0
        cur.append(e)
        n += len(e)
    words.append("".join(cur))
    return ["=?utf-8?Q?%s?=" % w for w in words]


def fold_words(name, text, width=76):
    """NAME: TEXT folded at spaces so lines stay near WIDTH."""
    out, line = [], name + ":"
    for w in text.split(" "):
        if len(line) + 1 + len(w) > width and line != name + ":":
            out.append(line)
            line = " " + w
        else:
            line += " " + w
    out.append(line)
    return CRLF.join(out)


def is_ascii(s):
    return s.isascii()


def qp(s):
    """Quoted-printable of the UTF-8 of S (S's lines end in CRLF)."""
    return binascii.b2a_qp(s.encode("utf-8"))


def ascii_text(s):
    return cap_lines(s.translate(ASCII_MAP)).encode("ascii", "replace")


def ascii_html(s):
    return cap_lines(s.encode("ascii", "xmlcharrefreplace").decode("ascii")).encode("ascii")


def cap_lines(text, limit=990):
    """TEXT (CRLF lines) with every line longer than LIMIT broken at a space
    (or hard): 7bit lines must stay within RFC 5322's 998 characters."""
    lines = text.split(CRLF)
    if max(map(len, lines)) <= limit:
        return text
    out = []
    for ln in lines:
        while len(ln) > limit:
            cut = ln.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            out.append(ln[:cut])
            ln = ln[cut:]
        out.append(ln)
    return CRLF.join(out)


def minify(lines, limit=980):
    """Join LINES greedily into lines of at most LIMIT characters: the long
    lines of mailers that emit HTML without line breaks."""
    out, cur = [], ""
    for ln in lines:
        ln = ln.strip()
        if cur and len(cur) + len(ln) > limit:
            out.append(cur)
            cur = ""
        cur += ln
    if cur:
        out.append(cur)
    return out


def build_ascii_map():
    """Extend ASCII_MAP with the accented letters of the vocabulary."""
    chars = set()
    for table in (WORDS, SHOP_PARTS, SUBJECTS, OFFERS, MONTHS, CTAS, FOOTER,
                  ADDRESS):
        stack = [table]
        while stack:
            x = stack.pop()
            if isinstance(x, str):
                chars.update(c for c in x if ord(c) > 127)
            elif isinstance(x, dict):
                stack.extend(x.values())
            else:
                stack.extend(x)
    for c in sorted(chars):
        if ord(c) not in ASCII_MAP:
            d = unicodedata.normalize("NFKD", c).encode("ascii", "ignore")
            ASCII_MAP[ord(c)] = d.decode() or "?"


build_ascii_map()


# --------------------------------------------------------------------------
# the generator

class Persona:
    """One sending customer: its name, language, mailer and habits."""


class Gen:
    def __init__(self, n, ndomains, seed, nokey_share):
        self.rng = rng = random.Random(seed)
        self.n = n
        self.cust = [CUST_FMT % (i + 1) for i in range(ndomains)]
        self.nokey = [NOKEY_FMT % (i + 1) for i in range(NOKEY_DOMAINS)]
        # text pools: paragraphs (raw, wrapped), titles, per language
        self.paras, self.wrapped, self.titles = {}, {}, {}
        self.short, self.short_wrapped = {}, {}
        for lang, _ in LANG_WEIGHTS:
            ps, ws, ts = [], [], []
            for _ in range(240):
                p = " ".join(self.sentence(lang) for _ in range(rng.randint(1, 5)))
                ps.append(p)
                ws.append(CRLF.join(textwrap.wrap(p, 72)))
            self.short[lang] = [self.sentence(lang) for _ in range(60)]
            self.short_wrapped[lang] = [CRLF.join(textwrap.wrap(s, 72))
                                        for s in self.short[lang]]
            for _ in range(120):
                t = " ".join(rng.choice(WORDS[lang]) for _ in range(rng.randint(2, 6)))
                ts.append(t[:1].upper() + t[1:])
            self.paras[lang], self.wrapped[lang], self.titles[lang] = ps, ws, ts
        # subjects take their {title} from the plain-ASCII titles, so that
        # English subjects are mostly unencoded
        self.subj_titles = {l: [t for t in ts if t.isascii()] or ts
                            for l, ts in self.titles.items()}
        self.personas = {}
        for d in self.cust + self.nokey:
            self.personas[d] = self.persona(d)
        # Zipf weights over the customer domains, c001 the biggest sender
        acc, cum = 0.0, []
        for k in range(1, ndomains + 1):
            acc += 1.0 / k ** ZIPF_S
            cum.append(acc)
        self.zipf_cum = cum
        # exact shares of size classes and nokey messages, shuffled
        classes = []
        for name, share in CLASSES:
            classes += [name] * round(n * share)
        classes += ["mid"] * (n - len(classes))
        rng.shuffle(classes)
        self.classes = classes[:n]
        self.nokey_idx = frozenset(rng.sample(range(n), round(n * nokey_share)))

    # -- text ------------------------------------------------------------
    def sentence(self, lang):
        rng = self.rng
        w = [rng.choice(WORDS[lang]) for _ in range(rng.randint(6, 20))]
        s = " ".join(w)
        return s[:1].upper() + s[1:] + rng.choice(".........!?")

    def token(self, nbytes):
        return base64.urlsafe_b64encode(self.rng.randbytes(nbytes)).rstrip(b"=").decode()

    def alnum(self, alphabet, k):
        return "".join(self.rng.choices(alphabet, k=k))

    # -- customers -------------------------------------------------------
    def persona(self, domain):
        rng = self.rng
        p = Persona()
        p.domain = domain
        p.cid = domain.split(".")[0]
        p.lang = rng.choices([l for l, _ in LANG_WEIGHTS],
                             [w for _, w in LANG_WEIGHTS])[0]
        a, b = SHOP_PARTS[p.lang]
        p.name = rng.choice(a) + " " + rng.choice(b)
        p.senders = rng.sample(("news", "newsletter", "hello", "info", "offers",
                                "team", "no-reply", "updates", "shop"), 2)
        p.mailer = rng.choice(MAILERS)
        p.tz = rng.choice((0, 0, 60, -300, -480, 330, 120, -240))
        p.day2 = rng.random() < 0.3
        p.msgid_cap = "Message-Id" if rng.random() < 0.15 else "Message-ID"
        p.charset = rng.choice(("UTF-8", "utf-8"))
        p.qp = p.lang != "en" or rng.random() < 0.6     # else 7bit
        p.wrap = rng.random() < 0.6
        p.minify = rng.random() < 0.25
        p.fold_ct = rng.random() < 0.5
        p.fold_lu = rng.random() < 0.6
        p.lu_https_first = rng.random() < 0.5
        p.preamble = rng.random() < 0.4
        p.subj_enc = ew_b if rng.random() < 0.5 else ew_q
        p.reply_to = rng.random() < 0.75
        p.reply_addr = rng.choice(("support", "reply", "hello", "care")) + "@" + domain
        p.custom_links = rng.random() < 0.5
        p.click_host = ("links." + domain) if p.custom_links else ("click." + ESP)
        p.custom_bounce = rng.random() < 0.5
        p.bounce_sub = "em%d.%s" % (rng.randint(100, 9999), domain)
        p.account = rng.randint(10000, 99999)
        p.list_id = rng.choice(("%s <newsletter.%s>" % (p.name, domain),
                                "%s Newsletter <%d.list-id.%s>" % (p.name, p.account, ESP)))
        p.color = "#%06x" % rng.getrandbits(24)
        tmpl, streets, cities = ADDRESS[p.lang]
        p.address = tmpl.format(num=rng.randint(1, 250), street=rng.choice(streets),
                                city=rng.choice(cities), st="CA",
                                zip="%05d" % rng.randint(1000, 99999))
        # each customer's software emits its fields in its own fixed order
        core = ["Date", "From", "Reply-To", "To", "Subject", "Message-ID"]
        rest = ["MIME-Version", "Content-Type", "Content-Transfer-Encoding",
                "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id",
                "Feedback-ID", "Precedence", "X-Mailer", "X-Campaign-ID"]
        rng.shuffle(core)
        rng.shuffle(rest)
        p.order = core + rest
        p.css = self.css(p)
        return p

    def css(self, p):
        return CRLF.join((
            '<style type="text/css">',
            "  body, table, td, a { -webkit-text-size-adjust: 100%; -ms-text-size-adjust: 100%; }",
            "  table, td { mso-table-lspace: 0pt; mso-table-rspace: 0pt; }",
            "  img { -ms-interpolation-mode: bicubic; border: 0; height: auto; line-height: 100%; outline: none; text-decoration: none; }",
            "  body { margin: 0 !important; padding: 0 !important; width: 100% !important; background-color: #f4f4f4; }",
            "  a { color: %s; }" % p.color,
            "  h1, h2 { font-family: Georgia, 'Times New Roman', serif; color: #222222; }",
            "  .button { background-color: %s; border-radius: 4px; color: #ffffff !important; display: inline-block; padding: 12px 24px; text-decoration: none; }" % p.color,
            "  .footer { color: #888888; font-size: 12px; line-height: 18px; }",
            "  @media screen and (max-width: 600px) {",
            "    .container { width: 100% !important; }",
            "    .mobile-hide { display: none !important; }",
            "    .col { display: block !important; width: 100% !important; }",
            "  }",
            "</style>"))

    # -- one message -----------------------------------------------------
    def target_size(self, cls):
        rng = self.rng
        if cls == "small":
            return int(rng.triangular(1400, 2700, 1900))
        if cls == "large":
            return int(rng.triangular(60000, 110000, 78000))
        if cls == "huge":
            return int(rng.triangular(300000, 520000, 400000))
        while True:
            s = rng.lognormvariate(9.45, 0.42)        # e^9.45 = 12.7 K
            if 5120 <= s <= 30720:
                return int(s)

    def body_kind(self, cls):
        r = self.rng.random()
        if cls == "small":
            return "text" if r < 0.5 else "html" if r < 0.85 else "alt"
        if cls == "mid":
            return ("alt" if r < 0.77 else "html" if r < 0.94 else
                    "text" if r < 0.98 else "mixed")
        if cls == "large":
            return "mixed" if r < 0.65 else "alt"
        return "mixed"

    def boundary(self, p, i):
        rng = self.rng
        style = p.mailer[2]
        if style == "php":
            return "b1_" + "%032x" % rng.getrandbits(128)
        if style == "java":
            return "----=_Part_%d_%d.%d" % (rng.randint(1, 99999),
                                           rng.randint(10**8, 10**9 - 1),
                                           (BASE_TS + i) * 1000 + rng.randint(0, 999))
        if style == "python":
            return "===============%019d==" % rng.randint(0, 10**19 - 1)
        if style == "esp":
            return "_=_esp_%s_=_" % self.alnum(EXIM_ALNUM, 24)
        return "--boundary_%d_%s" % (rng.randint(0, 9), self.guid())

    def guid(self):
        h = "%032x" % self.rng.getrandbits(128)
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def message_id(self, p, ts, i):
        rng = self.rng
        style = p.mailer[3]
        if style == "hex":
            return "<%032x@%s>" % (rng.getrandbits(128), p.domain)
        if style == "java":
            return "<%d.%d.%d.JavaMail.mailer@app-%02d.%s>" % (
                rng.randint(10**8, 10**9), i + 1, ts * 1000 + rng.randint(0, 999),
                rng.randint(1, 24), ESP)
        if style == "python":
            return "<%d%02d.%d.%d@app-%02d.%s>" % (
                ts, rng.randint(0, 99), rng.randint(1000, 65000),
                rng.getrandbits(60), rng.randint(1, 24), ESP)
        if style == "esp":
            return "<%s.%s@mta.%s>" % (self.alnum(EXIM_ALNUM, 22), p.cid, ESP)
        return "<%s@%s>" % (self.guid(), p.domain)

    def received(self, k, ts, rcpt, env):
        """K Received fields, newest (top) first; the message left the app
        at TS. Each hop names the host of the hop before it."""
        rng = self.rng
        hops = ["app", "mq", "mta", "relay"]
        if k == 2:
            hops = ["app", "relay"]
        elif k == 3:
            hops = ["app", rng.choice(("mq", "mta")), "relay"]
        out = []
        t = ts
        app = rng.randint(1, 24)
        prev, prev_ip = "app-%02d.%s" % (app, ESP), "10.20.%d.%d" % (app, rng.randint(2, 254))
        for h in hops:
            t += rng.randint(0, 2)
            date = fmt_date(t, 0, False)
            if h == "app":
                if rng.random() < 0.5:
                    by = "smtp-in-%02d.%s" % (rng.randint(1, 8), ESP)
                    f = ("Received: from %s (%s [%s])\r\n"
                         "\tby %s (Postfix) with ESMTP id %s\r\n"
                         "\tfor <%s>; %s (UTC)" % (
                             prev, prev.replace(".", ".int.", 1), prev_ip, by,
                             self.alnum(POSTFIX_ALNUM, 14), rcpt, date))
                    prev_ip = "10.21.0.%d" % rng.randint(2, 254)
                else:
                    by = prev
                    f = ("Received: from localhost (localhost [127.0.0.1])\r\n"
                         "\tby %s (Postfix) with ESMTP id %s;\r\n"
                         "\t%s" % (by, "%010X" % rng.getrandbits(40), date))
            elif h == "mq":
                by = "mq-%02d.%s" % (rng.randint(1, 8), ESP)
                f = ("Received: from [%s] (helo=%s)\r\n"
                     "\tby %s with esmtpa (Exim 4.96)\r\n"
                     "\t(envelope-from <%s>)\r\n"
                     "\tid %s-%s-%s\r\n\tfor %s; %s" % (
                         prev_ip, prev, by, env,
                         self.alnum(EXIM_ALNUM, 6), self.alnum(EXIM_ALNUM, 6),
                         self.alnum(EXIM_ALNUM, 2), rcpt, date))
                prev_ip = "10.30.0.%d" % rng.randint(2, 254)
            elif h == "mta":
                by = "mta-%02d.out.%s" % (rng.randint(1, 32), ESP)
                f = ("Received: from %s (%s [%s]) by\r\n"
                     " %s (PowerMTA(TM) v5.5r1) with ESMTP id\r\n"
                     " <%d.%016x@%s>; %s" % (
                         prev, prev.replace(".", ".int.", 1), prev_ip, by, t,
                         rng.getrandbits(64), by, date))
                if rng.random() < 0.3:
                    prev_ip = "IPv6:2001:db8:40::%x" % rng.randint(1, 0xffff)
                else:
                    prev_ip = "198.51.100.%d" % rng.randint(1, 254)
            else:
                by = "relay-%02d.out.%s" % (rng.randint(1, 12), ESP)
                f = ("Received: from %s (%s [%s])\r\n"
                     "\tby %s (Postfix) with ESMTPS id %s\r\n"
                     "\t(version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n"
                     "\t%s" % (prev, prev, prev_ip, by,
                               self.alnum(POSTFIX_ALNUM, 14), date))
            out.append(f)
            prev = by
        out.reverse()
        return out, t

    def display(self, name, p):
        """NAME as a display-name: atom text, quoted string or encoded-word."""
        if not is_ascii(name):
            ws = p.subj_enc(name)
            return " ".join(ws) if sum(map(len, ws)) < 60 else "\r\n ".join(ws)
        if any(c in name for c in '.,:;@<>()[]"\\'):
            return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')
        return name

    def subject(self, p, first, month, num):
        rng = self.rng
        lang = p.lang
        s = rng.choice(SUBJECTS[lang]).format(
            shop=p.name, offer=rng.choice(OFFERS[lang]), first=first.title(),
            month=month, num=num, title=rng.choice(self.subj_titles[lang]))
        if is_ascii(s) and rng.random() > 0.03:
            return fold_words("Subject", s)
        return "Subject: " + "\r\n ".join(p.subj_enc(s))

    def link(self, p):
        return "https://%s/ls/click?upn=%s" % (p.click_host, self.token(self.rng.randint(48, 96)))

    # -- bodies ----------------------------------------------------------
    def text_part(self, p, ctx, budget):
        """A text/plain body of about BUDGET encoded bytes."""
        rng = self.rng
        enc = qp if p.qp else ascii_text
        lang = p.lang
        if budget < 1500:
            pool = self.short_wrapped[lang] if p.wrap else self.short[lang]
        else:
            pool = self.wrapped[lang] if p.wrap else self.paras[lang]
        foot = FOOTER[lang]
        footer = enc("-- " + CRLF + p.name + " · " + p.address + CRLF +
                     foot[0].format(domain=p.domain) + CRLF +
                     foot[1] + ": " + ctx["unsub"] + CRLF +
                     foot[2] + ": " + ctx["view"] + CRLF)
        chunks = [enc(GREETING[lang].format(first=ctx["first"].title()) + CRLF + CRLF)]
        size = len(chunks[0]) + len(footer)
        k = 0
        while True:
            c = enc(rng.choice(pool) + CRLF + CRLF)
            if k and k % 3 == 0:
                c += enc(rng.choice(CTAS[lang]) + ": " + self.link(p) + CRLF + CRLF)
            if k and size + len(c) - budget > budget - size:
                break         # stop at the length nearest the budget
            chunks.append(c)
            size += len(c)
            k += 1
        chunks.append(footer)
        return b"".join(chunks)

    def html_part(self, p, ctx, budget):
        """A text/html body of about BUDGET encoded bytes."""
        rng = self.rng
        enc = qp if p.qp else ascii_html
        lang = p.lang
        esc = html.escape
        foot = FOOTER[lang]
        lite = budget < 4500
        if lite:
            head = ['<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>',
                    '<body style="font-family:Arial,Helvetica,sans-serif;font-size:15px;color:#333333;">',
                    "<p>%s</p>" % esc(GREETING[lang].format(first=ctx["first"].title()))]
            tail = ['<p style="font-size:12px;color:#888888;">%s<br>%s<br><a href="%s">%s</a></p>' % (
                        esc(foot[0].format(domain=p.domain)), esc(p.address), ctx["unsub"], esc(foot[1])),
                    '<img src="%s" width="1" height="1" alt="">' % ctx["open"],
                    "</body></html>"]
        else:
            head = ['<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
                    '<html xmlns="http://www.w3.org/1999/xhtml" lang="%s">' % lang,
                    "<head>",
                    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />',
                    '<meta name="viewport" content="width=device-width, initial-scale=1.0" />',
                    "<title>%s</title>" % esc(ctx["title"]),
                    p.css,
                    "</head>",
                    '<body style="margin:0;padding:0;background-color:#f4f4f4;">',
                    '<span class="preheader" style="display:none !important;visibility:hidden;opacity:0;color:transparent;height:0;width:0;">%s</span>' % esc(rng.choice(self.paras[lang])[:140]),
                    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f4f4f4">',
                    '<tr><td align="center" style="padding:20px 0;">',
                    '<table role="presentation" class="container" width="600" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff">',
                    '<tr><td class="mobile-hide" align="right" style="padding:8px 16px;font-size:11px;color:#999999;"><a href="%s" style="color:#999999;">%s</a></td></tr>' % (ctx["view"], esc(foot[2])),
                    '<tr><td align="center" style="padding:24px;background-color:%s;"><a href="%s"><img src="https://img.%s/%s/logo.png" alt="%s" width="180" height="48" style="display:block;border:0;" /></a></td></tr>' % (
                        p.color, self.link(p), ESP, p.cid, esc(p.name)),
                    '<tr><td style="padding:24px 32px 0 32px;font-family:Arial,Helvetica,sans-serif;font-size:16px;color:#333333;">%s</td></tr>' % esc(GREETING[lang].format(first=ctx["first"].title()))]
            tail = ['<tr><td class="footer" align="center" style="padding:24px 32px;font-family:Arial,Helvetica,sans-serif;">',
                    "%s<br />" % esc(foot[0].format(domain=p.domain)),
                    "%s<br />" % esc(p.address),
                    '<a href="%s">%s</a> | <a href="%s">%s</a> | <a href="%s">%s</a>' % (
                        ctx["unsub"], esc(foot[1]), self.link(p), esc(foot[3]), ctx["view"], esc(foot[2])),
                    "</td></tr>",
                    "</table>",
                    "</td></tr>",
                    "</table>",
                    '<img src="%s" width="1" height="1" alt="" style="display:block;height:1px;width:1px;border:0;" />' % ctx["open"],
                    "</body>",
                    "</html>"]

        def lines_to(lines):
            if p.minify:
                lines = minify(lines)
            return enc(CRLF.join(lines) + CRLF)

        chead, ctail = lines_to(head), lines_to(tail)
        chunks = [chead]
        size = len(chead) + len(ctail)
        short = budget < 1500
        while True:
            c = lines_to(self.html_block(p, lite, short))
            if len(chunks) > 1 and size + len(c) - budget > budget - size:
                break         # stop at the length nearest the budget
            chunks.append(c)
            size += len(c)
        chunks.append(ctail)
        return b"".join(chunks)

    def html_block(self, p, lite, short=False):
        rng = self.rng
        lang = p.lang
        esc = html.escape
        para = esc(rng.choice(self.short[lang] if short else self.paras[lang]))
        if lite:
            return ["<p>%s</p>" % para,
                    '<p><a href="%s">%s</a></p>' % (self.link(p), esc(rng.choice(CTAS[lang])))]
        r = rng.random()
        if r < 0.6:
            return ['<tr><td class="content" style="padding:24px 32px;font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:24px;color:#333333;">',
                    '<h2 style="margin:0 0 12px 0;font-size:22px;line-height:28px;">%s</h2>' % esc(rng.choice(self.titles[lang])),
                    '<p style="margin:0 0 16px 0;">%s</p>' % para,
                    '<a href="%s" class="button" style="background-color:%s;border-radius:4px;color:#ffffff;display:inline-block;padding:12px 24px;text-decoration:none;">%s</a>' % (
                        self.link(p), p.color, esc(rng.choice(CTAS[lang]))),
                    "</td></tr>"]
        if r < 0.85:
            cells = []
            cur = "$" if lang == "en" else ""
            for _ in range(rng.choice((2, 3))):
                price = "%d.%02d" % (rng.randint(5, 300), rng.choice((0, 49, 95, 99)))
                price = cur + price if cur else price.replace(".", ",") + " €"
                cells.append(
                    '<td class="col" width="33%%" valign="top" style="padding:8px;text-align:center;font-family:Arial,Helvetica,sans-serif;">'
                    '<a href="%s"><img src="https://img.%s/%s/p/%08x.jpg" width="160" height="160" alt="%s" style="display:block;margin:0 auto;border:0;" /></a>'
                    '<p style="margin:8px 0 4px 0;font-size:14px;">%s</p><p style="margin:0;font-weight:bold;">%s</p></td>' % (
                        self.link(p), ESP, p.cid, rng.getrandbits(32),
                        esc(rng.choice(self.titles[lang])), esc(rng.choice(self.titles[lang])), price))
            return ['<tr><td style="padding:16px 24px;">',
                    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"><tr>'] + \
                cells + ["</tr></table>", "</td></tr>"]
        return ['<tr><td style="padding:0;">',
                '<a href="%s"><img src="https://img.%s/%s/b/%08x.jpg" width="600" height="%d" alt="%s" style="display:block;width:100%%;max-width:600px;height:auto;border:0;" /></a>' % (
                    self.link(p), ESP, p.cid, rng.getrandbits(32), rng.choice((200, 250, 300)),
                    esc(rng.choice(self.titles[lang]))),
                '<p style="margin:8px 32px 16px 32px;font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#555555;">%s</p>' % para,
                "</td></tr>"]

    def part_header(self, p, ctype):
        cte = "quoted-printable" if p.qp else "7bit"
        return ("Content-Type: %s; charset=%s\r\nContent-Transfer-Encoding: %s\r\n\r\n"
                % (ctype, p.charset, cte)).encode()

    def attachment(self, p, i, nbytes):
        """A base64 attachment part of about NBYTES encoded bytes."""
        rng = self.rng
        kind = rng.choice(("pdf", "pdf", "png", "jpg"))
        if kind == "pdf":
            name = rng.choice(("invoice", "catalogue", "brochure", "ticket")) + "-%d.pdf" % (i + 1)
            ctype, magic = "application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
        elif kind == "png":
            name = "offer-%d.png" % (i + 1)
            ctype, magic = "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        else:
            name = "photo-%d.jpg" % (i + 1)
            ctype, magic = "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
        hdr = ('Content-Type: %s; name="%s"\r\n'
               'Content-Disposition: attachment; filename="%s"\r\n'
               "Content-Transfer-Encoding: base64\r\n\r\n" % (ctype, name, name)).encode()
        raw = max(64, (nbytes - len(hdr)) * 57 // 78)
        data = magic + rng.randbytes(raw - len(magic))
        return hdr + base64.encodebytes(data).replace(b"\n", b"\r\n")

    def alternative(self, p, ctx, budget, bnd):
        """multipart/alternative text + HTML of about BUDGET bytes."""
        tshare = self.rng.uniform(0.2, 0.35)
        pre = b"This is a multi-part message in MIME format.\r\n\r\n" if p.preamble else b""
        b = bnd.encode()
        text = self.text_part(p, ctx, int(budget * tshare))
        htm = self.html_part(p, ctx, budget - len(text) - 200)
        return (pre + b"--" + b + b"\r\n" + self.part_header(p, "text/plain") + text +
                b"\r\n--" + b + b"\r\n" + self.part_header(p, "text/html") + htm +
                b"\r\n--" + b + b"--\r\n")

    # -- the whole message -----------------------------------------------
    def message(self, i):
        rng = self.rng
        cls = self.classes[i]
        if i in self.nokey_idx:
            domain = self.nokey[rng.randrange(len(self.nokey))]
        else:
            domain = self.cust[rng.choices(range(len(self.cust)),
                                           cum_weights=self.zipf_cum)[0]]
        p = self.personas[domain]
        target = self.target_size(cls)
        kind = self.body_kind(cls)
        ts = BASE_TS + i * 7 // 3
        first, last = rng.choice(FIRST), rng.choice(LAST)
        rcpt = "%s%s%s%d@%s" % (first, rng.choice((".", "_", "")), last,
                                rng.randint(1, 999), rng.choice(RCPT_DOMAINS))
        ctx = {"first": first, "title": "",
               "unsub": "https://unsub.%s/u/%s" % (ESP, self.token(33)),
               "view": "https://view.%s/v/%s" % (ESP, self.token(24)),
               "open": "https://%s/o/%s" % (p.click_host, self.token(42))}
        if p.custom_bounce:
            env = "bounces+%d-%s-%s@%s" % (p.account, "%04x" % rng.getrandbits(16),
                                          rcpt.replace("@", "="), p.bounce_sub)
        else:
            env = "bounce-%d.%s-%s@bounce.%s" % (p.account, self.token(9),
                                                rcpt.replace("@", "="), ESP)
        # --- header fields
        nrecv = 2 if cls == "small" else rng.choices((2, 3, 4), (3, 5, 2))[0]
        recv, _ = self.received(nrecv, ts, rcpt, env)
        month = MONTHS[p.lang][time.gmtime(ts).tm_mon - 1]
        camp = "%s-%d-%04d" % (p.cid, p.account, i // 500 + rng.randint(0, 3))
        f = {}
        f["Date"] = "Date: " + fmt_date(ts, p.tz, p.day2)
        f["From"] = "From: %s <%s@%s>" % (self.display(p.name, p), p.senders[rng.random() < 0.2], domain)
        if p.reply_to:
            f["Reply-To"] = "Reply-To: " + p.reply_addr
        r = rng.random()
        if r < 0.5:
            f["To"] = "To: " + rcpt
        elif r < 0.85:
            f["To"] = "To: %s %s <%s>" % (first.title(), last.title(), rcpt)
        else:
            f["To"] = 'To: "%s, %s" <%s>' % (last.title(), first.title(), rcpt)
        f["Subject"] = self.subject(p, first, month, i // 50 + 1)
        ctx["title"] = rng.choice(self.titles[p.lang])
        f["Message-ID"] = "%s: %s" % (p.msgid_cap, self.message_id(p, ts, i))
        f["MIME-Version"] = "MIME-Version: 1.0"
        bnd = self.boundary(p, i) if kind in ("alt", "mixed") else None
        if kind == "text":
            ctype = "text/plain; charset=" + p.charset
        elif kind == "html":
            ctype = "text/html; charset=" + p.charset
        else:
            sub = "alternative" if kind == "alt" else "mixed"
            ctype = 'multipart/%s;%sboundary="%s"' % (sub, "\r\n\t" if p.fold_ct else " ", bnd)
        f["Content-Type"] = "Content-Type: " + ctype
        if kind in ("text", "html"):
            f["Content-Transfer-Encoding"] = "Content-Transfer-Encoding: " + (
                "quoted-printable" if p.qp else "7bit")
        mailto = "<mailto:unsub-%s@unsub.%s?subject=unsubscribe>" % (self.token(18), ESP)
        https = "<%s>" % ctx["unsub"]
        lu = (https, mailto) if p.lu_https_first else (mailto, https)
        f["List-Unsubscribe"] = "List-Unsubscribe: " + (",\r\n " if p.fold_lu else ", ").join(lu)
        f["List-Unsubscribe-Post"] = "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
        f["List-Id"] = "List-Id: " + self.display(p.list_id.split(" <")[0], p) + \
            " <" + p.list_id.split(" <")[1]
        f["Feedback-ID"] = "Feedback-ID: %s:%s:%s:espbench" % (
            camp, p.cid, rng.choice(("newsletter", "promo", "digest", "announce")))
        f["Precedence"] = "Precedence: bulk"
        if p.mailer[1]:
            f["X-Mailer"] = "X-Mailer: " + p.mailer[1]
        else:
            f["X-Campaign-ID"] = "X-Campaign-ID: " + camp
        # optional extras, up to a field count drawn per message
        base = 1 + len(recv) + len(f)
        want = rng.randint(15, 17) if cls == "small" else rng.randint(16, 25)
        extras = []
        if rng.random() < 0.03 and base < 25:     # one long unfolded line
            data = ",".join('"%s":"%s"' % (k, self.token(rng.randint(20, 60)))
                            for k in ("campaign", "audience", "segment", "variant",
                                      "send", "journey", "step", "recipient")[:rng.randint(4, 8)])
            extras.append("X-Campaign-Data: {%s}" % data)
        pool = [
            "X-Campaign-ID: " + camp,
            "X-ESP-Recipient-ID: %016x" % rng.getrandbits(64),
            "X-Report-Abuse: Please report abuse for this campaign here: "
            "https://www.%s/abuse?a=%d&c=%s" % (ESP, p.account, camp),
            "X-Auto-Response-Suppress: OOF, AutoReply",
            "X-Priority: 3",
            "X-Entity-Ref-ID: " + self.token(15),
            "X-ESP-Tags: %s, week%d, %s" % (rng.choice(("newsletter", "promo", "digest")),
                                           time.gmtime(ts).tm_yday // 7 + 1, p.lang),
            "X-Complaints-To: abuse@" + ESP,
            "X-ESP-Outgoing: %s-198.51.100.%d" % (time.strftime("%Y.%m.%d", time.gmtime(ts)),
                                                 rng.randint(1, 254)),
            "X-ESP-User: %s-%d" % (p.cid, p.account),
            "Organization: " + (p.name if is_ascii(p.name) else " ".join(ew_b(p.name))),
            "Content-Language: " + p.lang,
        ]
        if "X-Campaign-ID" in f:
            pool = pool[1:]
        rng.shuffle(pool)
        while base + len(extras) < want and pool:
            extras.append(pool.pop())
        extras = extras[:25 - base]
        rp = "Return-Path: <%s>" % env
        hdr_fields = [rp] + recv + [f[k] for k in p.order if k in f] + extras
        header = (CRLF.join(hdr_fields) + CRLF + CRLF).encode("ascii")
        # --- body, filled to the target size
        budget = max(300, target - len(header))
        if kind == "text":
            body = self.text_part(p, ctx, budget)
        elif kind == "html":
            body = self.html_part(p, ctx, budget)
        elif kind == "alt":
            body = self.alternative(p, ctx, budget, bnd)
        else:
            inner = self.boundary(p, i + 1)
            while inner == bnd:
                inner += "x"
            altsize = min(int(budget * rng.uniform(0.15, 0.35)), rng.randint(8000, 20000))
            alt = self.alternative(p, ctx, altsize, inner)
            b = bnd.encode()
            head = (b"--" + b + b"\r\nContent-Type: multipart/alternative;\r\n\tboundary=\"" +
                    inner.encode() + b"\"\r\n\r\n")
            att = self.attachment(p, i, budget - len(head) - len(alt) - 60)
            body = (head + alt + b"\r\n--" + b + b"\r\n" + att + b"--" + b + b"--\r\n")
        if rng.random() < 0.03:
            body += b"\r\n"       # a trailing empty line, as some mailers leave
        return header + body, len(hdr_fields), cls, kind, domain


# --------------------------------------------------------------------------
# statistics, cache and the main program

def pct(sorted_vals, num, den):
    """Nearest-rank percentile NUM/DEN of SORTED_VALS (integer arithmetic)."""
    k = max(1, -(-len(sorted_vals) * num // den))
    return sorted_vals[k - 1]


def stats_text(sizes, nfields, classes, kinds, domains, cust, nokey):
    s = sorted(sizes)
    n = len(s)
    med = s[(n - 1) // 2]
    lines = [
        "# bench/corpus.py version %s" % VERSION,
        "count %d" % n,
        "total_bytes %d" % sum(s),
        "size_min %d" % s[0],
        "size_median %d" % med,
        "size_p90 %d" % pct(s, 9, 10),
        "size_max %d" % s[-1],
        "size_mean %d" % (sum(s) // n),
        "header_fields_min %d" % min(nfields),
        "header_fields_max %d" % max(nfields),
    ]
    for c in ("small", "mid", "large", "huge"):
        sel = sorted(sz for sz, k in zip(sizes, classes) if k == c)
        if sel:
            lines.append("class_%s %d min %d median %d max %d" % (
                c, len(sel), sel[0], sel[(len(sel) - 1) // 2], sel[-1]))
        else:
            lines.append("class_%s 0" % c)
    for k in ("alt", "html", "text", "mixed"):
        lines.append("body_%s %d" % (k, kinds.count(k)))
    per = {}
    for d in domains:
        per[d] = per.get(d, 0) + 1
    nk = sum(per.get(d, 0) for d in nokey)
    used = sum(1 for d in cust if per.get(d, 0))
    top = max(cust, key=lambda d: (per.get(d, 0), -cust.index(d)))
    lines += [
        "nokey_messages %d" % nk,
        "customer_domains_used %d of %d" % (used, len(cust)),
        "customer_top %s %d" % (top, per.get(top, 0)),
        "customer_least %d" % min(per.get(d, 0) for d in cust),
    ]
    if n >= MEDIAN_MIN_N:
        ok = MEDIAN_OK[0] <= med <= MEDIAN_OK[1]
        lines.append("median_check %s (%d in %d..%d)" % (
            "ok" if ok else "FAIL", med, MEDIAN_OK[0], MEDIAN_OK[1]))
    else:
        ok = True
        lines.append("median_check skipped (n < %d)" % MEDIAN_MIN_N)
    return "\n".join(lines) + "\n", ok, med


def params_text(a):
    return ("generator bench/corpus.py\nversion %s\nn %d\ndomains %d\nseed %d\n"
            "nokey_share %r\n" % (VERSION, a.n, a.domains, a.seed, a.nokey_share))


def msg_name(i):
    return "m%06d" % (i + 1)


def cached(out, want_params, n):
    """True when OUT holds a complete corpus for WANT_PARAMS."""
    try:
        with open(os.path.join(out, "params.txt")) as f:
            if f.read() != want_params:
                return False
        for name in ("domains.txt", "stats.txt"):
            if not os.path.isfile(os.path.join(out, name)):
                return False
        names = os.listdir(os.path.join(out, "msgs"))
        if len(names) != n or sorted(names) != sorted(msg_name(i) for i in range(n)):
            return False
        total = None
        with open(os.path.join(out, "stats.txt")) as f:
            for line in f:
                if line.startswith("total_bytes "):
                    total = int(line.split()[1])
        d = os.path.join(out, "msgs")
        return total == sum(os.stat(os.path.join(d, x)).st_size for x in names)
    except (OSError, ValueError):
        return False


def remove_corpus(path):
    """Remove PATH if it is (part of) a corpus; refuse anything else."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        sys.exit("corpus: %s exists and is not a corpus directory; not touching it" % path)
    extra = sorted(set(os.listdir(path)) - set(CORPUS_ENTRIES))
    if extra:
        sys.exit("corpus: %s holds other files (%s); not replacing it" % (path, extra[0]))
    shutil.rmtree(path)


def main():
    ap = argparse.ArgumentParser(description="Write a deterministic ESP benchmark corpus.")
    ap.add_argument("--out", required=True, help="corpus directory")
    ap.add_argument("--n", type=int, default=10000, help="messages (default 10000)")
    ap.add_argument("--domains", type=int, default=200, help="customer domains (default 200)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--nokey-share", type=float, default=0.02,
                    help="share of messages from domains without a key (default 0.02)")
    a = ap.parse_args()
    if a.n < 1 or a.domains < 1 or not 0.0 <= a.nokey_share <= 1.0:
        ap.error("need --n >= 1, --domains >= 1 and 0 <= --nokey-share <= 1")
    out = os.path.normpath(os.path.abspath(a.out))
    want = params_text(a)
    if cached(out, want, a.n):
        print("corpus: cached (%s)" % a.out)
        return 0

    t0 = time.monotonic()
    tmp, old = out + ".tmp", out + ".old"
    remove_corpus(tmp)
    remove_corpus(old)
    if os.path.lexists(out):
        # check before the long build that we may replace it afterwards
        if not os.path.isdir(out) or os.path.islink(out) or \
                set(os.listdir(out)) - set(CORPUS_ENTRIES):
            remove_corpus(out)    # exits with the reason
    os.makedirs(os.path.join(tmp, "msgs"))
    g = Gen(a.n, a.domains, a.seed, a.nokey_share)
    sizes, nfields, classes, kinds, doms = [], [], [], [], []
    mdir = os.path.join(tmp, "msgs")
    for i in range(a.n):
        data, nf, cls, kind, dom = g.message(i)
        assert 15 <= nf <= 25, (i, nf)
        with open(os.path.join(mdir, msg_name(i)), "wb") as f:
            f.write(data)
        sizes.append(len(data))
        nfields.append(nf)
        classes.append(cls)
        kinds.append(kind)
        doms.append(dom)
    with open(os.path.join(tmp, "domains.txt"), "w") as f:
        f.write("".join(d + "\n" for d in g.cust))
    st, ok, med = stats_text(sizes, nfields, classes, kinds, doms, g.cust, g.nokey)
    if not ok:
        shutil.rmtree(tmp)
        sys.stderr.write(st)
        sys.exit("corpus: median size %d outside %d..%d; corpus not written"
                 % (med, MEDIAN_OK[0], MEDIAN_OK[1]))
    with open(os.path.join(tmp, "stats.txt"), "w") as f:
        f.write(st)
    with open(os.path.join(tmp, "params.txt"), "w") as f:     # last: marks complete
        f.write(want)
    if os.path.lexists(out):
        os.rename(out, old)
    os.rename(tmp, out)
    if os.path.lexists(old):
        shutil.rmtree(old)
    print("corpus: built %s: %d messages, %.1f MB, median %d bytes, %.1f s"
          % (a.out, a.n, sum(sizes) / 1e6, med, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
