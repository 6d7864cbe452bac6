<?xml version="1.0" encoding="utf-8"?>
<!--
  feed.xsl: how a browser shows feedpost's rss.xml and atom.xml (XSLT 1.0). Every RSS and Atom
  document links it with <?xml-stylesheet type="text/xsl" href="…/feed.xsl"?>; feed readers
  ignore it. It turns the feed into a page that says what a feed is and lists the entries.
  Edit this file to change that page; `feedpost build` copies it into the feeds folder.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:atom="http://www.w3.org/2005/Atom"
    exclude-result-prefixes="atom">
  <xsl:output method="html" encoding="utf-8" indent="yes"
      doctype-system="about:legacy-compat"/>

  <xsl:template match="/">
    <xsl:variable name="title" select="rss/channel/title | atom:feed/atom:title"/>
    <xsl:variable name="lang" select="atom:feed/@xml:lang | rss/channel/language"/>
    <html lang="{$lang}">
      <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title><xsl:value-of select="$title"/> · feed</title>
        <style>
          body { margin: 0; background: #f4f4f5; color: #18181b; font: 16px/1.6 -apple-system,
                 "Segoe UI", "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", sans-serif; }
          main { max-width: 46rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
          .about { background: #fef9c3; border: 1px solid #fde047; border-radius: 6px;
                   padding: .75rem 1rem; font-size: .95rem; }
          .about code { background: #fff; padding: 0 .25rem; word-break: break-all; }
          h1 { font-size: 1.6rem; margin: 1.5rem 0 .25rem; }
          .description { color: #52525b; margin-top: 0; }
          ol { list-style: none; padding: 0; }
          li { background: #fff; border-radius: 6px; padding: .75rem 1rem; margin: .75rem 0; }
          li a { font-weight: 600; color: #1d4ed8; text-decoration: none; }
          li a:hover { text-decoration: underline; }
          time { display: block; color: #71717a; font-size: .85rem; }
          li p { margin: .25rem 0 0; color: #3f3f46; }
        </style>
      </head>
      <body>
        <main>
          <p class="about">
            This is a web feed. Copy its address into your feed reader to subscribe:
            <code><xsl:value-of select="rss/channel/atom:link[@rel='self']/@href | atom:feed/atom:link[@rel='self']/@href"/></code>
          </p>
          <xsl:apply-templates select="rss/channel | atom:feed"/>
        </main>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="rss/channel">
    <h1><a href="{link}"><xsl:value-of select="title"/></a></h1>
    <p class="description"><xsl:value-of select="description"/></p>
    <ol>
      <xsl:for-each select="item">
        <li>
          <a href="{link}"><xsl:value-of select="title"/></a>
          <time><xsl:value-of select="pubDate"/></time>
          <p><xsl:value-of select="description"/></p>
        </li>
      </xsl:for-each>
    </ol>
  </xsl:template>

  <xsl:template match="atom:feed">
    <h1><a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a></h1>
    <p class="description"><xsl:value-of select="atom:subtitle"/></p>
    <ol>
      <xsl:for-each select="atom:entry">
        <li>
          <a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a>
          <time datetime="{atom:published}"><xsl:value-of select="substring(atom:published, 1, 10)"/></time>
          <p><xsl:value-of select="atom:summary"/></p>
        </li>
      </xsl:for-each>
    </ol>
  </xsl:template>
</xsl:stylesheet>
