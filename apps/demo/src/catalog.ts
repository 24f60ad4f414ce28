import { cache } from '@cache/core'

export interface Product {
  id: string
  name: string
  category: string
  priceCents: number
}

export interface Review {
  productId: string
  stars: number
  text: string
}

/** Stands in for a database or a remote API: every call takes `delayMs`. */
export class SlowCatalog {
  queries = 0
  private readonly products = new Map<string, Product>([
    ['1', { id: '1', name: 'Espresso machine', category: 'kitchen', priceCents: 24900 }],
    ['2', { id: '2', name: 'Burr grinder', category: 'kitchen', priceCents: 8900 }],
    ['3', { id: '3', name: 'Desk lamp', category: 'office', priceCents: 3900 }],
    ['4', { id: '4', name: 'Standing desk', category: 'office', priceCents: 41900 }],
  ])

  constructor(private readonly delayMs = 300) {}

  async find(id: string): Promise<Product | null> {
    await this.wait()
    return this.products.get(id) ?? null
  }

  async list(category?: string): Promise<Product[]> {
    await this.wait()
    return [...this.products.values()].filter((p) => category === undefined || p.category === category)
  }

  /** What customers said about a product; `null` for an unknown product. */
  async reviews(id: string): Promise<Review[] | null> {
    await this.wait()
    const product = this.products.get(id)
    if (product === undefined) return null
    return [
      { productId: id, stars: 5, text: `The ${product.name.toLowerCase()} does what it says.` },
      { productId: id, stars: 4, text: 'Arrived quickly, works well.' },
    ]
  }

  async setPrice(id: string, priceCents: number): Promise<Product | null> {
    await this.wait()
    const product = this.products.get(id)
    if (product === undefined) return null
    product.priceCents = priceCents
    return { ...product }
  }

  private wait(): Promise<void> {
    this.queries++
    return new Promise((resolve) => setTimeout(resolve, this.delayMs))
  }
}

/** The service layer: results of the slow catalog memoized for 60 s on the default cache. */
export class ProductService {
  constructor(readonly catalog: SlowCatalog) {}

  @cache({ ttl: 60, tags: ['products'] })
  async product(id: string): Promise<Product | null> {
    return this.catalog.find(id)
  }

  @cache({ ttl: 60, tags: ['products'] })
  async products(category?: string): Promise<Product[]> {
    return this.catalog.list(category)
  }
}
